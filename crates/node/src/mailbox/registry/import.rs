//! Importing a mailbox: from an export whose state is proved to restore
//! before the import counts (replica copies, `dem local import`), or, for
//! a move's target, as soon as the state is durable (the move is
//! acknowledged then, and the mailbox restored right after).

use std::sync::Arc;

use super::super::actor::ExportedState;
use super::super::restore::{Restored, Source, restore};
use super::Mailboxes;
use crate::mailbox::{ImportRefusal, MailboxCallError as E};
use dem_proto::ids::{CodeHash, MailboxId};
use dem_store::{ImportSnapshot, ImportTail, MailboxMeta, MailboxStore, StagedRecord};

impl Mailboxes {
    /// Rebuilds a mailbox from an export. Every component it needs must
    /// already be in the code store. With `replace`, an existing mailbox of
    /// that id is overwritten. The mailbox is woken once to prove the state
    /// restores; if it does not, the import is undone.
    pub async fn import(
        &self,
        id: &MailboxId,
        state: ExportedState,
        replace: bool,
    ) -> Result<(), E> {
        let store = self.import_prelude(id, &state, replace).await?;
        // The store writes the state while a fresh instance restores it:
        // the proof that it restores costs no time after the commit, and
        // the mailbox arrives awake.
        let commit = store.import(
            id.as_str(),
            state.meta.clone(),
            state.snapshot.clone(),
            state.tail.clone(),
            replace,
        );
        let source = Source {
            snapshot: state.snapshot.as_ref(),
            tail: &state.tail,
            last_seq: state.last_seq(),
        };
        let label: Arc<str> = id.to_string().into();
        let (committed, restored) = tokio::join!(
            commit,
            restore(&self.runtime, &self.clock, id, label, &state.meta, source)
        );
        committed?;
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                let _ = store.remove(id.as_str()).await;
                return Err(E::Import(ImportRefusal::Restore(Box::new(e))));
            }
        };
        self.adopt_import(id, state.meta, Some(restored));
        Ok(())
    }

    /// Like [`Mailboxes::import`], but done once the state is durable
    /// here: the mailbox starts hibernated and restores on its first call
    /// (a move wakes it right after acknowledging). The stream's checksums
    /// already proved the bytes are the ones the source held under the same
    /// code, which its own restart would restore without a proof; a state
    /// that still fails to restore stays on disk, never dropped.
    /// With `staged`, the snapshot is that file, written as it arrived,
    /// and `state` carries none; with `staged_tail`, the log tail is in
    /// the store already (`MailboxStore::stage_log`) and `state` carries
    /// none of it.
    pub async fn import_durable(
        &self,
        id: &MailboxId,
        state: ExportedState,
        staged: Option<StagedRecord>,
        staged_tail: Option<ImportTail>,
        replace: bool,
    ) -> Result<(), E> {
        let store = self.import_prelude(id, &state, replace).await?;
        let meta = state.meta.clone();
        let snapshot = match (staged, state.snapshot) {
            (Some(_), Some(_)) => {
                return Err(E::Import(ImportRefusal::Refused(
                    "an import has a snapshot and a staged file".into(),
                )));
            }
            (Some(file), None) => Some(ImportSnapshot::Staged(file)),
            (None, bytes) => bytes.map(ImportSnapshot::Bytes),
        };
        let tail = match staged_tail {
            None => ImportTail::Rows(state.tail),
            Some(staged) if state.tail.is_empty() => staged,
            Some(_) => {
                return Err(E::Import(ImportRefusal::Refused(
                    "an import has a tail and a staged one".into(),
                )));
            }
        };
        store
            .import_staged(id.as_str(), meta, snapshot, tail, replace)
            .await?;
        self.adopt_import(id, state.meta, None);
        Ok(())
    }

    /// Checks an import can go ahead and stops any actor of that id.
    async fn import_prelude(
        &self,
        id: &MailboxId,
        state: &ExportedState,
        replace: bool,
    ) -> Result<&MailboxStore, E> {
        let code = CodeHash(state.meta.code_hash);
        if !self.runtime.code().contains(&code) {
            return Err(E::MissingCode(code));
        }
        for plugin in &state.plugins {
            let hash: CodeHash = plugin.code_hash.parse()?;
            if !self.runtime.code().contains(&hash) {
                return Err(E::MissingCode(hash));
            }
        }
        if !replace && self.contains(id)? {
            return Err(E::Exists(id.clone()));
        }
        let old = self.lock().remove(id);
        if let Some(old) = old {
            old.stop().await;
        }
        self.moved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.store.as_ref().ok_or_else(|| {
            E::Import(ImportRefusal::Refused(
                "in-memory hosts cannot import".into(),
            ))
        })
    }

    /// Starts the actor of a committed import, with its restored instance
    /// if there is one.
    fn adopt_import(&self, id: &MailboxId, meta: MailboxMeta, restored: Option<Restored>) {
        let mut actors = self.lock();
        // A call may have found the committed mailbox first and started
        // its actor from disk: that one holds the same state, keep it.
        if actors.get(id).is_none_or(|h| h.is_closed()) {
            actors.insert(id.clone(), self.spawn_with(id, meta, restored));
        }
    }
}
