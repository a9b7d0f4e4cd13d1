//! `MailboxActor`: a tokio task that owns one mailbox's wasm Store. Calls
//! arrive on a bounded channel and run one at a time, so the guest never
//! sees concurrency and its state needs no locks.
//!
//! Durability is pipelined (group commit): a mutation runs in the guest, its
//! `Op` is handed to the store's writer, and the caller's reply waits in a
//! small task until that entry is fsynced — meanwhile the actor already runs
//! the next call. Reads also wait until every mutation they could have seen
//! is durable, so nobody ever observes state that a crash could take back.
//!
//! A trap throws the instance away; the next call rebuilds it from the last
//! snapshot plus the log tail, after the in-flight commits have settled.
//! After `idle_hibernate` without calls, or when the host's instance slots
//! are full and this is the least recently used idle mailbox, the actor
//! snapshots and drops the instance (hibernation) and then retires: it
//! closes its channel, finishes what was already queued, and ends, so a
//! hibernated mailbox costs no task, channel or memory at all. The
//! registry starts a fresh actor at the next call, which wakes it from
//! disk; it never starts one while the old one is still finishing.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument as _;

use super::clock::HybridClock;
use super::incoming::Incoming;
use super::request::{Op, Request, Response};
use super::residents::{Resident, Residents};
use super::restore::Restored;
use super::{MailboxCallError as E, MailboxesConfig, MigrationOutcome};
use crate::replica::{OpId, Since, VersionVector, Window};
use dem_proto::ids::MailboxId;
use dem_proto::mail::PluginEntry;
use dem_runtime::filter::FilterInstance;
use dem_runtime::{MailboxInstance, Runtime};
use dem_store::{MailboxMeta, MailboxStore};

/// Which digest of a mailbox's state to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestKind {
    /// BLAKE3 of the whole snapshot: what a move or export must preserve.
    Snapshot,
    /// The guest's `state-digest`: what replicas must agree on.
    State,
}

mod moving;
pub(crate) use messages::message_of;
pub use moving::{DeltaState, ExportedState, MoveState, ReadAhead, vv_after};
mod deliver;
mod durable;
mod messages;
mod search;
mod sync;
use durable::{LoadFor, load};

pub(crate) type Reply<T> = oneshot::Sender<Result<T, E>>;

/// A call's answer and, for a logged mutation, the op it became.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub response: Response,
    pub op: Option<OpId>,
}

/// What the actor is asked to do.
pub(crate) enum Command {
    Call {
        request: Box<Request>,
        reply: Reply<Tracked>,
    },
    Deliver {
        mail: Box<Incoming>,
        reply: Reply<Tracked>,
    },
    /// Applies ops made at other replicas, in order, with the message
    /// blobs their deliveries name; answers the version vector once they
    /// are durable.
    Apply {
        ops: Vec<Vec<u8>>,
        messages: Vec<Vec<u8>>,
        reply: Reply<VersionVector>,
    },
    /// The ops a replica at `peer` lacks, the message blobs they name, and
    /// this replica's vector.
    Since {
        peer: VersionVector,
        budget_bytes: usize,
        reply: Reply<(Since, Vec<Vec<u8>>, VersionVector)>,
    },
    Export {
        reply: Reply<ExportedState>,
    },
    Digest {
        kind: DigestKind,
        reply: Reply<[u8; 32]>,
    },
    /// Pause, export (or, for a target holding an older copy at `peer`,
    /// just the ops it lacks), and wait for the outcome of the move; calls
    /// queue meanwhile.
    Migrate {
        peer: Option<VersionVector>,
        /// The state read while the mailbox still ran, for the pause to
        /// complete rather than read again.
        ahead: Option<ReadAhead>,
        reply: Reply<MoveState>,
        outcome: oneshot::Receiver<MigrationOutcome>,
    },
    Hibernate {
        reply: oneshot::Sender<()>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

/// The sending side of an actor's channel.
#[derive(Clone)]
pub struct ActorHandle {
    tx: mpsc::Sender<Command>,
    /// Tells this actor from a later one of the same mailbox.
    generation: u64,
    /// Closed when the actor's task has ended.
    exited: watch::Receiver<()>,
}

/// What a mailbox's actor needs from the registry that starts it.
#[derive(Clone)]
pub(crate) struct ActorParts {
    pub runtime: Arc<Runtime>,
    /// `None` for an in-memory mailbox (benchmarks only).
    pub store: Option<MailboxStore>,
    pub clock: Arc<HybridClock>,
    pub config: MailboxesConfig,
    pub residents: Arc<Residents>,
    pub host: Arc<str>,
}

impl ActorHandle {
    /// Sends a command; gives it back if the actor has retired (its
    /// channel is closed), so the caller may send it to the next actor:
    /// a command given back was never seen.
    pub(crate) async fn send(&self, command: Command) -> Result<(), Command> {
        self.tx.send(command).await.map_err(|e| e.0)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Resolves once the actor's task has ended.
    pub(crate) async fn exited(&self) {
        let mut exited = self.exited.clone();
        while exited.changed().await.is_ok() {}
    }

    pub async fn hibernate(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Hibernate { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub async fn stop(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Stop { reply }).await.is_ok() {
            let _ = rx.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// How far the log writer has got with this mailbox's entries.
#[derive(Debug, Clone, Copy, Default)]
struct Durability {
    /// Every entry up to here has been committed or has failed.
    settled: u64,
    /// Some entry failed: the instance is ahead of the disk.
    failed: bool,
}

/// The task state of one mailbox.
pub(crate) struct MailboxActor {
    id: MailboxId,
    label: Arc<str>,
    runtime: Arc<Runtime>,
    /// `None` for an in-memory mailbox (benchmarks only): nothing survives.
    store: Option<MailboxStore>,
    clock: Arc<HybridClock>,
    config: MailboxesConfig,
    meta: MailboxMeta,
    instance: Option<MailboxInstance>,
    /// The installed plugins as the instance last said, so a delivery need
    /// not ask; cleared whenever the list may have changed.
    plugins: Option<Arc<[PluginEntry]>>,
    /// Live filter instances by plugin name, kept while the mailbox is awake.
    filters: HashMap<String, FilterInstance>,
    /// Last op applied to the instance and handed to the writer.
    applied_seq: u64,
    snapshot_seq: u64,
    snapshot_bytes: u64,
    /// Log bytes written since the last snapshot.
    log_bytes: u64,
    durable: watch::Sender<Durability>,
    /// The replicated ops the instance has applied.
    vv: VersionVector,
    /// Recent ops, to ship to replicas that lack them.
    window: Window,
    /// The message blobs of logged ops not yet durable, by hash, with the
    /// seq of their op: the store cannot read them back before their
    /// commit, but a replica may be sent the op meanwhile, and must get
    /// its bytes with it.
    unsettled_messages: HashMap<[u8; 32], (u64, Arc<[u8]>)>,
    /// Whether `vv` and `window` have been read from the store yet.
    loaded: bool,
    /// Whether this actor has compared the search index with the messages
    /// the mailbox references; until then a search does, whatever seq the
    /// index says it saw (the mailbox may have moved away and back).
    index_checked: bool,
    residents: Arc<Residents>,
    /// This mailbox's entry among the awake ones, while it has an instance
    /// that may be hibernated to make room.
    resident: Option<Arc<Resident>>,
    /// Called once the actor has finished, to take its handle out of the
    /// registry (if it is still the registered one).
    retire: Option<Box<dyn FnOnce() + Send>>,
    /// Dropped when the task ends; handles see their `exited` close.
    _exited: watch::Sender<()>,
}

/// What ended a wait for the next command.
enum Next {
    Command(Command),
    /// Every handle is gone, or the channel was closed and drained.
    Closed,
    /// No call for `idle_hibernate`.
    Idle,
    /// The host's instance slots are wanted elsewhere.
    Evicted,
}

impl MailboxActor {
    /// Starts the actor of `id`; with `restored`, it starts awake with
    /// that instance (an import restored it while committing). `retire`
    /// runs when the actor has finished for good.
    pub(crate) fn spawn(
        id: MailboxId,
        parts: &ActorParts,
        meta: MailboxMeta,
        restored: Option<Restored>,
        generation: u64,
        retire: Box<dyn FnOnce() + Send>,
    ) -> ActorHandle {
        let (tx, rx) = mpsc::channel(parts.config.queue_depth.max(1));
        let (exited_tx, exited) = watch::channel(());
        let span = tracing::info_span!("mailbox", mailbox = %id, host = %parts.host);
        let mut actor = MailboxActor {
            label: id.to_string().into(),
            id: id.clone(),
            runtime: parts.runtime.clone(),
            store: parts.store.clone(),
            clock: parts.clock.clone(),
            config: parts.config.clone(),
            meta,
            instance: None,
            plugins: None,
            filters: HashMap::new(),
            applied_seq: 0,
            snapshot_seq: 0,
            snapshot_bytes: 0,
            log_bytes: 0,
            durable: watch::Sender::new(Durability::default()),
            vv: VersionVector::new(),
            window: Window::default(),
            unsettled_messages: HashMap::new(),
            loaded: false,
            index_checked: false,
            residents: parts.residents.clone(),
            resident: None,
            retire: Some(retire),
            _exited: exited_tx,
        };
        if let Some(r) = restored {
            actor.adopt(r);
        }
        tokio::spawn(actor.run(rx).instrument(span));
        ActorHandle {
            tx,
            generation,
            exited,
        }
    }

    /// Waits for the next command, or for a reason to hibernate.
    async fn next(&mut self, rx: &mut mpsc::Receiver<Command>) -> Next {
        // Only a mailbox with durable state can hibernate and retire.
        if self.store.is_none() {
            return rx.recv().await.map_or(Next::Closed, Next::Command);
        }
        let Some(resident) = self.resident.clone() else {
            // Asleep (new, or its wake failed): retire unless called soon.
            return match tokio::time::timeout(self.config.idle_hibernate, rx.recv()).await {
                Ok(c) => c.map_or(Next::Closed, Next::Command),
                Err(_) => Next::Idle,
            };
        };
        if rx.is_empty() && self.runtime.slots().wanted() {
            return Next::Evicted;
        }
        resident.set_idle(true);
        let next = tokio::select! {
            biased;
            c = rx.recv() => c.map_or(Next::Closed, Next::Command),
            () = resident.evicted() => Next::Evicted,
            () = tokio::time::sleep(self.config.idle_hibernate) => Next::Idle,
        };
        resident.set_idle(false);
        if matches!(next, Next::Command(_)) {
            self.residents.touch(&resident);
        }
        next
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // An import may hand over an instance restored from an older
        // schema, with converted messages to store.
        if self.instance.is_some()
            && let Err(e) = self.after_restore().await
        {
            tracing::error!("storing the converted messages failed: {e}; dropping the instance");
            self.drop_instance();
        }
        loop {
            let command = match self.next(&mut rx).await {
                Next::Command(c) => c,
                Next::Closed => break,
                Next::Idle | Next::Evicted => {
                    self.hibernate().await;
                    // Whatever was sent before the close is still run;
                    // after it, the registry starts a fresh actor.
                    rx.close();
                    continue;
                }
            };
            match command {
                Command::Call { request, reply } => self.handle_call(*request, reply).await,
                Command::Deliver { mail, reply } => self.handle_deliver(*mail, reply).await,
                Command::Apply {
                    ops,
                    messages,
                    reply,
                } => self.handle_apply(ops, messages, reply).await,
                Command::Since {
                    peer,
                    budget_bytes,
                    reply,
                } => {
                    let _ = reply.send(self.handle_since(&peer, budget_bytes).await);
                }
                Command::Export { reply } => {
                    let _ = reply.send(self.handle_export(None).await);
                }
                Command::Digest { kind, reply } => {
                    let _ = reply.send(self.handle_digest(kind).await);
                }
                Command::Migrate {
                    peer,
                    ahead,
                    reply,
                    outcome,
                } => {
                    if let Some(to) = self.handle_migrate(peer, ahead, reply, outcome).await {
                        self.forward(rx, to).await;
                        self.finish();
                        return;
                    }
                }
                Command::Hibernate { reply } => {
                    self.hibernate().await;
                    let _ = reply.send(());
                }
                Command::Stop { reply } => {
                    self.hibernate().await;
                    let _ = self.settle().await;
                    // Let go of the database before saying we stopped, so
                    // the caller may reopen it at once.
                    self.store = None;
                    self.finish();
                    let _ = reply.send(());
                    return;
                }
            }
        }
        self.hibernate().await;
        let _ = self.settle().await;
        self.finish();
    }

    /// The actor is done with the mailbox: out of the awake set, and out
    /// of the registry, so the next call starts a fresh actor.
    fn finish(&mut self) {
        self.drop_instance();
        if let Some(retire) = self.retire.take() {
            retire();
        }
    }

    async fn handle_call(&mut self, request: Request, reply: Reply<Tracked>) {
        if let Err(e) = self.wake().await {
            let _ = reply.send(Err(e));
            return;
        }
        self.run_request(request, reply).await;
    }

    async fn run_request(&mut self, request: Request, reply: Reply<Tracked>) {
        self.run_request_with(request, None, reply).await
    }

    /// Runs one request; a delivery's stored message is logged with its op.
    async fn run_request_with(
        &mut self,
        mut request: Request,
        message: Option<Vec<u8>>,
        reply: Reply<Tracked>,
    ) {
        let ctx = request.is_mutation().then(|| self.clock.context());
        let Some(instance) = self.instance.as_mut() else {
            let _ = reply.send(Err(E::Gone(self.id.clone())));
            return;
        };
        match instance.call(ctx, &mut request).await {
            Err(trap) => {
                tracing::error!("{trap}; dropping the instance");
                self.drop_instance();
                let _ = reply.send(Err(E::Trap(trap)));
            }
            Ok(Err(refusal)) => self.reply_when_durable(reply, Err(E::Refused(refusal))),
            Ok(Ok(response)) => match ctx {
                Some(ctx) => {
                    if matches!(
                        request,
                        Request::InstallPlugin { .. } | Request::RemovePlugin { .. }
                    ) {
                        self.plugins = None;
                    }
                    // The op is the request as it took effect. A delivery
                    // takes the placement the guest reports it applied
                    // (INBOX where it fell back; a duplicate's own), since
                    // only the guest knows its fallback rules, and replays
                    // and replicas, which hold no folder limit, must file
                    // the mail where it did here.
                    let request = match (request, &response) {
                        (Request::Deliver { mail, .. }, Response::Delivered(d)) => {
                            Request::Deliver {
                                mail,
                                place: d.placement.clone(),
                            }
                        }
                        (request, _) => request,
                    };
                    let op = Op {
                        ctx,
                        request,
                        seq: self.vv.next_of(ctx.replica).seq,
                    };
                    self.log(op, message, reply, response).await
                }
                None => match (request, response) {
                    (Request::Get { parts, .. }, Response::Detail(mut read)) => {
                        let result = self.read_message(&mut read, parts).map(|()| Tracked {
                            response: Response::Detail(read),
                            op: None,
                        });
                        self.reply_when_durable(reply, result)
                    }
                    (Request::Search { query, limit }, _)
                        if !query.body_terms.is_empty() || !query.text_terms.is_empty() =>
                    {
                        let result = self.search_text(query, limit).await.map(|found| Tracked {
                            response: Response::Summaries(found),
                            op: None,
                        });
                        self.reply_when_durable(reply, result)
                    }
                    (_, response) => {
                        self.reply_when_durable(reply, Ok(Tracked { response, op: None }))
                    }
                },
            },
        }
    }

    /// Drops the mailbox instance and everything derived from it, which
    /// frees their instance slots.
    fn drop_instance(&mut self) {
        self.instance = None;
        self.plugins = None;
        self.filters.clear();
        if let Some(resident) = self.resident.take() {
            self.residents.leave(&self.id, &resident);
        }
    }

    /// Takes `instance` as the running one; a mailbox with durable state
    /// joins the awake set, from which it may be hibernated to make room.
    fn set_instance(&mut self, instance: MailboxInstance) {
        self.instance = Some(instance);
        if self.store.is_some() && self.resident.is_none() {
            self.resident = Some(self.residents.enter(&self.id));
        }
    }

    /// A read for the actor's own use (no durability wait needed: the
    /// result is not shown to anyone before the following mutation is).
    async fn read(&mut self, mut request: Request) -> Result<Response, E> {
        let instance = self
            .instance
            .as_mut()
            .ok_or_else(|| E::Gone(self.id.clone()))?;
        match instance.call(None, &mut request).await {
            Ok(r) => r.map_err(E::Refused),
            Err(trap) => {
                self.drop_instance();
                Err(E::Trap(trap))
            }
        }
    }
}
#[cfg(test)]
mod tests;
