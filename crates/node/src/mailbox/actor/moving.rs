//! The moving side of the actor: the durable state as it leaves the host
//! (`ExportedState`), exporting it, pausing for
//! a migration (shipping only the missing ops to a target that holds an
//! older copy, `crate::replica::delta`) and, once the mailbox has moved,
//! answering every queued and later call with where it went; and the state
//! digest tests compare.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Command, DigestKind, E, LoadFor, MailboxActor, Reply};
use crate::mailbox::{MigrationOutcome, MovedTo};
use crate::replica::{VersionVector, delta_for};
pub use dem_proto::export::{ExportedState, vv_after};
use dem_proto::mail::PluginEntry;
use dem_store::{MailboxMeta, SnapshotRecord};

/// What a paused mailbox ships to the target of its move.
#[derive(Debug, Clone)]
pub enum MoveState {
    /// The whole durable state.
    Full(ExportedState),
    /// Only the ops an older copy at the target lacks.
    Delta(DeltaState),
}

impl MoveState {
    /// The whole state, if that is what is shipped.
    pub fn full(&self) -> Option<&ExportedState> {
        match self {
            MoveState::Full(s) => Some(s),
            MoveState::Delta(_) => None,
        }
    }
}

/// The ops that bring a target's older copy (at `base`) up to `vv`.
#[derive(Debug, Clone)]
pub struct DeltaState {
    pub meta: MailboxMeta,
    /// Installed plugins, whose code the target may lack.
    pub plugins: Vec<PluginEntry>,
    /// The target copy's vector the ops were chosen against.
    pub base: VersionVector,
    /// This replica's vector: the target's once it applied the ops.
    pub vv: VersionVector,
    /// Durable ops, in the order this replica applied them.
    pub ops: Vec<Arc<[u8]>>,
    /// The message blobs the deliveries among `ops` name.
    pub messages: Vec<Vec<u8>>,
    /// Every blob the mailbox's index names: the target's copy must name
    /// each of them, or be sent the whole state (which carries the ones
    /// it lacks), since the source lets go of its copy after the move.
    pub listed: Vec<[u8; 32]>,
}

/// A move's read of the durable state made while the mailbox still runs
/// (`MailboxStore::load_to_ship` on a blocking thread), which the pause
/// then completes with the ops logged since.
pub type ReadAhead =
    tokio::task::JoinHandle<Result<Option<dem_store::Recovery>, dem_store::LoadError>>;

impl MailboxActor {
    /// The durable state. With a store, that is exactly what the store
    /// holds once every logged op has settled: its latest snapshot (a file
    /// already on disk) and the log tail after it, read rather than encoded
    /// again, so a move or copy does not pause the mailbox for the guest to
    /// encode the whole state (tens of ms for 10k mails), and ships what a
    /// restart here would restore. Without a store, the running instance's
    /// snapshot and no tail.
    pub(super) async fn handle_export(
        &mut self,
        ahead: Option<ReadAhead>,
    ) -> Result<ExportedState, E> {
        self.wake().await?;
        let plugins = self.listed_plugins().await?;
        // The blobs of the mails the state holds travel with it; the state
        // read below may lag the index by ops in flight, whose blobs the
        // store holds too, so the list covers it.
        let messages = self.listed_messages().await?;
        if let Some(store) = self.store.clone() {
            let t = std::time::Instant::now();
            self.settle().await?;
            let settle_ms = t.elapsed().as_secs_f64() * 1e3;
            // A read ahead that failed is only time lost: read it all.
            let earlier = match ahead {
                Some(ahead) => ahead.await.ok().and_then(Result::ok).flatten(),
                None => None,
            };
            let recovery = super::load(self.id.clone(), store, LoadFor::Ship(earlier)).await?;
            tracing::debug!(
                settle_ms,
                load_ms = t.elapsed().as_secs_f64() * 1e3 - settle_ms,
                "read the state to ship"
            );
            return Ok(ExportedState {
                meta: recovery.meta,
                snapshot: recovery.snapshot,
                tail: recovery.tail,
                plugins,
                snapshot_checksum: recovery.snapshot_file,
                messages,
            });
        }
        let instance = self
            .instance
            .as_mut()
            .ok_or_else(|| E::Gone(self.id.clone()))?;
        let (schema_version, bytes) = instance.snapshot().await.map_err(E::Trap)?;
        let snapshot = SnapshotRecord {
            seq: self.applied_seq,
            schema_version,
            bytes: bytes.into(),
            vv: self.vv.clone(),
        };
        Ok(ExportedState {
            meta: self.meta.clone(),
            snapshot: Some(snapshot),
            tail: vec![],
            plugins,
            snapshot_checksum: None,
            messages,
        })
    }

    /// The ops a target copy at `peer` lacks, if the window reaches back
    /// to it; `None` if only the whole state will do.
    async fn delta_since(&mut self, peer: &VersionVector) -> Result<Option<DeltaState>, E> {
        self.wake().await?;
        // Only durable ops travel: the window also holds ones in flight.
        self.settle().await?;
        let Some(ops) = delta_for(&self.window, &self.vv, peer) else {
            return Ok(None);
        };
        let plugins = self.listed_plugins().await?;
        let messages = self.messages_for(&ops);
        let listed = self.listed_messages().await?;
        Ok(Some(DeltaState {
            meta: self.meta.clone(),
            plugins,
            base: peer.clone(),
            vv: self.vv.clone(),
            ops,
            messages,
            listed,
        }))
    }

    /// Exports (or takes the delta for a target copy at `peer`), then waits
    /// (calls queue in the channel) for the move to settle. Returns where
    /// the mailbox went if it moved.
    pub(super) async fn handle_migrate(
        &mut self,
        peer: Option<VersionVector>,
        ahead: Option<ReadAhead>,
        reply: Reply<MoveState>,
        outcome: oneshot::Receiver<MigrationOutcome>,
    ) -> Option<MovedTo> {
        let delta = match &peer {
            Some(peer) if self.store.is_some() => self.delta_since(peer).await,
            _ => Ok(None),
        };
        let state = match delta {
            Ok(Some(d)) => Ok(MoveState::Delta(d)),
            Ok(None) => self.handle_export(ahead).await.map(MoveState::Full),
            Err(e) => Err(e),
        };
        match state {
            Ok(state) => {
                if reply.send(Ok(state)).is_err() {
                    return None;
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                return None;
            }
        }
        match outcome.await {
            Ok(MigrationOutcome::Moved(to)) => {
                tracing::info!(to = %to.host, epoch = to.epoch, "moved away");
                self.drop_instance();
                // `Migration::moved` queued the store delete; deleting here
                // too could land after a move back and erase it.
                self.store = None;
                Some(to)
            }
            Ok(MigrationOutcome::Stay) | Err(_) => {
                tracing::info!("move failed; the mailbox stays here");
                None
            }
        }
    }

    /// After a move: answers every queued call with where the mailbox went.
    pub(super) async fn forward(&mut self, mut rx: mpsc::Receiver<Command>, to: MovedTo) {
        rx.close();
        let moved = || E::Moved {
            id: self.id.clone(),
            to: to.clone(),
        };
        while let Some(command) = rx.recv().await {
            match command {
                Command::Call { reply, .. } | Command::Deliver { reply, .. } => {
                    let _ = reply.send(Err(moved()));
                }
                Command::Export { reply } => {
                    let _ = reply.send(Err(moved()));
                }
                Command::Apply { reply, .. } => {
                    let _ = reply.send(Err(moved()));
                }
                Command::Since { reply, .. } => {
                    let _ = reply.send(Err(moved()));
                }
                Command::Digest { reply, .. } => {
                    let _ = reply.send(Err(moved()));
                }
                Command::Migrate { reply, .. } => {
                    let _ = reply.send(Err(moved()));
                }
                Command::Hibernate { reply } | Command::Stop { reply } => {
                    let _ = reply.send(());
                }
            }
        }
    }

    pub(super) async fn handle_digest(&mut self, kind: DigestKind) -> Result<[u8; 32], E> {
        self.wake().await?;
        let instance = self
            .instance
            .as_mut()
            .ok_or_else(|| E::Gone(self.id.clone()))?;
        let digest = match kind {
            DigestKind::Snapshot => instance
                .snapshot()
                .await
                .map(|(_, bytes)| *blake3::hash(&bytes).as_bytes()),
            DigestKind::State => instance.state_digest().await,
        };
        match digest {
            Ok(digest) => Ok(digest),
            Err(trap) => {
                self.drop_instance();
                Err(E::Trap(trap))
            }
        }
    }
}
