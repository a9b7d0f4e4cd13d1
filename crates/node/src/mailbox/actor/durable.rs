//! The durable side of the actor: handing ops to the store's writer and
//! replying once they are fsynced, waiting for in-flight commits to settle,
//! rebuilding the instance from the last snapshot plus the log tail (wake),
//! and the snapshot policy (periodic and before hibernation).

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Durability, E, MailboxActor, Reply, Tracked};
use crate::mailbox::request::{Op, Response};
use crate::mailbox::restore::{Restored, Source, restore};
use crate::replica::OpId;
use dem_proto::ids::{CodeHash, MailboxId};
use dem_store::{Commit, MailboxStore, SnapshotRecord};

impl MailboxActor {
    /// Waits until every entry handed to the writer has committed or failed.
    pub(super) async fn settle(&mut self) -> Result<(), E> {
        let target = self.applied_seq;
        let mut rx = self.durable.subscribe();
        let waited = tokio::time::timeout(
            self.config.settle_timeout,
            rx.wait_for(|d| d.settled >= target),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(E::Restore {
                id: self.id.clone(),
                reason: format!(
                    "log writes did not settle within {:?}",
                    self.config.settle_timeout
                ),
            }),
        }
    }

    /// Makes sure a healthy instance is running: rebuilds it from durable
    /// state after hibernation, a trap or a failed commit.
    pub(super) async fn wake(&mut self) -> Result<(), E> {
        let failed = self.durable.borrow().failed;
        if self.instance.is_some() && !failed {
            return Ok(());
        }
        self.drop_instance();
        self.settle().await?;
        let started = std::time::Instant::now();
        let Some(store) = self.store.clone() else {
            let instance = self
                .runtime
                .instantiate_mailbox(&CodeHash(self.meta.code_hash), self.label.clone())
                .await?;
            self.set_instance(instance);
            return Ok(());
        };
        let recovery = load(self.id.clone(), store, LoadFor::Wake).await?;
        let source = Source {
            snapshot: recovery.snapshot.as_ref(),
            tail: &recovery.tail,
            last_seq: recovery.last_seq,
        };
        let restored = restore(
            &self.runtime,
            &self.clock,
            &self.id,
            self.label.clone(),
            &self.meta,
            source,
        )
        .await?;
        tracing::debug!(
            seq = restored.last_seq,
            replayed = recovery.tail.len(),
            "woke"
        );
        self.adopt(restored);
        self.after_restore().await?;
        self.residents.record_wake(started.elapsed());
        Ok(())
    }

    /// Takes a restored instance as the running one.
    pub(super) fn adopt(&mut self, r: Restored) {
        // After hibernation nothing changed: keep the longer window.
        if !self.loaded || r.vv != self.vv {
            self.window = r.window;
        }
        self.vv = r.vv;
        self.loaded = true;
        self.applied_seq = r.last_seq;
        self.snapshot_seq = r.snapshot_seq;
        self.snapshot_bytes = r.snapshot_bytes;
        self.log_bytes = r.log_bytes;
        let applied = self.applied_seq;
        self.durable.send_modify(|d| {
            *d = Durability {
                settled: applied,
                failed: false,
            }
        });
        self.set_instance(r.instance);
    }

    /// Hands an op to the writer; the reply goes out once it is durable.
    pub(super) async fn log(
        &mut self,
        op: Op,
        message: Option<Vec<u8>>,
        reply: Reply<Tracked>,
        response: Response,
    ) {
        let op_id = op.id_after(&self.vv);
        let response = Tracked {
            response,
            op: Some(op_id),
        };
        match self.append_logged(op_id, op.encode(), message) {
            None => {
                let _ = reply.send(Ok(response));
            }
            Some(durable) => {
                tokio::spawn(async move {
                    let result = durable
                        .await
                        .unwrap_or(Err(dem_store::CommitError::WriterGone));
                    let _ = reply.send(result.map(|()| response).map_err(E::Commit));
                });
            }
        }
        self.maybe_snapshot().await;
    }

    /// Records an op just applied to the instance: version vector, window,
    /// and the log, with the message blob a delivery names in the same
    /// commit (the returned receiver says when it is durable; `None` for
    /// an in-memory mailbox).
    pub(super) fn append_logged(
        &mut self,
        op_id: OpId,
        bytes: Vec<u8>,
        message: Option<Vec<u8>>,
    ) -> Option<oneshot::Receiver<Result<(), dem_store::CommitError>>> {
        self.vv.record(op_id);
        self.window.push(op_id, bytes.as_slice().into());
        let store = self.store.as_ref()?;
        self.applied_seq += 1;
        let seq = self.applied_seq;
        self.log_bytes += bytes.len() as u64;
        let settled = self.durable.borrow().settled;
        self.unsettled_messages.retain(|_, (s, _)| *s > settled);
        let commit = match message {
            Some(m) => {
                let hash = *blake3::hash(&m).as_bytes();
                self.unsettled_messages
                    .insert(hash, (seq, Arc::from(m.as_slice())));
                store.append_with_messages(self.id.as_str(), seq, bytes, vec![m])
            }
            None => store.append(self.id.as_str(), seq, bytes),
        };
        let durable = self.durable.clone();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let result = commit.await;
            durable.send_modify(|d| {
                d.settled = d.settled.max(seq);
                d.failed |= result.is_err();
            });
            if let Err(e) = &result {
                tracing::error!(seq, "log append failed: {e}");
            }
            let _ = tx.send(result);
        });
        Some(rx)
    }

    /// Snapshots once the log has grown past the policy's bound.
    pub(super) async fn maybe_snapshot(&mut self) {
        if self.store.is_some()
            && self.log_bytes >= self.config.snapshot_log_bytes_min.max(self.snapshot_bytes)
            && let Some(commit) = self.snapshot_now().await
        {
            // As often as the state is snapshotted: blobs of mails deleted
            // since are let go.
            self.reconcile_messages().await;
            tokio::spawn(async move {
                if let Err(e) = commit.await {
                    tracing::warn!("periodic snapshot failed, the log stays: {e}");
                }
            });
        }
    }

    pub(super) fn reply_when_durable<T: Send + 'static>(
        &self,
        reply: Reply<T>,
        result: Result<T, E>,
    ) {
        let target = self.applied_seq;
        if self.store.is_none() || self.durable.borrow().settled >= target {
            let _ = reply.send(result);
            return;
        }
        let mut rx = self.durable.subscribe();
        tokio::spawn(async move {
            let _ = rx.wait_for(|d| d.settled >= target).await;
            let _ = reply.send(result);
        });
    }

    /// Snapshots the instance at `applied_seq` and hands it to the writer,
    /// which also drops the log entries it covers.
    pub(super) async fn snapshot_now(&mut self) -> Option<Commit> {
        let store = self.store.clone()?;
        let instance = self.instance.as_mut()?;
        match instance.snapshot().await {
            Ok((schema_version, bytes)) => {
                self.snapshot_seq = self.applied_seq;
                self.snapshot_bytes = bytes.len() as u64;
                self.log_bytes = 0;
                let record = SnapshotRecord {
                    seq: self.applied_seq,
                    schema_version,
                    bytes: bytes.into(),
                    vv: self.vv.clone(),
                };
                Some(store.snapshot(self.id.as_str(), record))
            }
            Err(trap) => {
                tracing::error!("snapshot failed: {trap}; dropping the instance");
                self.drop_instance();
                None
            }
        }
    }

    pub(super) async fn hibernate(&mut self) {
        if self.instance.is_none() || self.store.is_none() {
            return;
        }
        if self.applied_seq > self.snapshot_seq
            && let Some(commit) = self.snapshot_now().await
            && let Err(e) = commit.await
        {
            tracing::warn!("snapshot before hibernation failed, the log stays: {e}");
        }
        self.drop_instance();
        tracing::debug!("hibernated");
    }
}

/// What a [`load`] is for.
pub(super) enum LoadFor {
    /// Waking the mailbox here: a snapshot file's bytes are checked.
    Wake,
    /// Shipping it, without hashing a snapshot file's bytes (the receiver
    /// checks them against the file's name), keeping what was read ahead
    /// if anything (`MailboxStore::reload_to_ship`).
    Ship(Option<dem_store::Recovery>),
}

/// The durable state of mailbox `id` in `store`, read off the async
/// workers.
pub(super) async fn load(
    id: MailboxId,
    store: MailboxStore,
    purpose: LoadFor,
) -> Result<dem_store::Recovery, E> {
    let key = id.to_string();
    let loaded = tokio::task::spawn_blocking(move || match purpose {
        LoadFor::Wake => store.load(&key),
        LoadFor::Ship(None) => store.load_to_ship(&key),
        LoadFor::Ship(Some(earlier)) => store.reload_to_ship(&key, earlier),
    })
    .await
    .map_err(|e| E::Restore {
        id: id.clone(),
        reason: e.to_string(),
    })??;
    loaded.ok_or(E::Unknown(id))
}
