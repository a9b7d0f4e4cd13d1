//! Pausing a mailbox for a move: the state it ships (read ahead while it
//! still runs, if the caller started that), and the `Migration` that
//! settles the move, forwarding the mailbox's calls once it has moved or
//! resuming it here if the move failed.

use std::sync::Arc;

use super::super::actor::{Command, MoveState, ReadAhead};
use super::Mailboxes;
use crate::mailbox::{MailboxCallError as E, MigrationOutcome, MovedTo};
use crate::replica::VersionVector;
use dem_proto::ids::MailboxId;

impl Mailboxes {
    /// Pauses a mailbox and exports it for a move, or takes only the ops a
    /// target copy at `peer` lacks if this replica's window reaches back to
    /// it. Calls queue until the returned `Migration` is settled; if it is
    /// dropped unsettled, the mailbox carries on here.
    pub async fn begin_migration(
        self: &Arc<Self>,
        id: &MailboxId,
        peer: Option<VersionVector>,
        ahead: Option<ReadAhead>,
    ) -> Result<Migration, E> {
        let (outcome, settle) = tokio::sync::oneshot::channel();
        let state = self
            .ask_actor(id, |reply| Command::Migrate {
                peer,
                ahead,
                reply,
                outcome: settle,
            })
            .await?;
        Ok(Migration {
            id: id.clone(),
            state,
            outcome: Some(outcome),
            boxes: self.clone(),
        })
    }

    /// Starts reading `id`'s durable state to ship, on a blocking thread,
    /// for [`Mailboxes::begin_migration`] to complete once the mailbox is
    /// paused; `None` without a store.
    pub fn read_ahead(&self, id: &MailboxId) -> Option<ReadAhead> {
        let store = self.store.clone()?;
        let key = id.to_string();
        Some(tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let read = store.load_to_ship(&key);
            // The pause waits for this read: worth seeing in a move's log.
            tracing::debug!(
                mailbox = %key,
                read_ms = started.elapsed().as_secs_f64() * 1e3,
                "read the state to ship ahead"
            );
            read
        }))
    }
}

/// A mailbox paused for a move, with what it ships.
pub struct Migration {
    pub id: MailboxId,
    pub state: MoveState,
    outcome: Option<tokio::sync::oneshot::Sender<MigrationOutcome>>,
    boxes: Arc<Mailboxes>,
}

impl Migration {
    /// The target has the mailbox durably: forget it here and forward.
    /// The local copy's delete is queued to the store writer before this
    /// returns, so a later import of the same mailbox (a move back) is
    /// written after it; the caller only decides whether to wait for its
    /// fsync (a move need not: the target already holds the mailbox).
    pub fn moved(mut self, to: MovedTo) -> Option<dem_store::Commit> {
        self.boxes
            .moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.id.clone(), to.clone());
        self.boxes.lock().remove(&self.id);
        let removal = self
            .boxes
            .store
            .as_ref()
            .map(|store| store.remove(self.id.as_str()));
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(MigrationOutcome::Moved(to));
        }
        removal
    }

    /// The move failed: the mailbox resumes here.
    pub fn stay(mut self) {
        if let Some(tx) = self.outcome.take() {
            let _ = tx.send(MigrationOutcome::Stay);
        }
    }
}
