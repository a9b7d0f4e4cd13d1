//! Attachment reference leases from the mailbox side: every
//! quarter of the network's attachment grace period, this host tells the
//! dispatch units which attachments the mails of the mailboxes it holds
//! reference (`AttachmentRefs`), which renews their leases
//! (`dispatch/references.rs`). Every replica of a mailbox does this, so an
//! attachment lives as long as any replica of any mailbox still has a mail
//! referencing it; after the last one is deleted its lease runs out and
//! the attachment keeper collects it.
//!
//! What a mailbox references is read from the mailbox itself (folders,
//! then each mail with attachments) and cached in a
//! [`RefTracker`](crate::replica::attachment::RefTracker) keyed by the
//! mailbox's last log seq, so only mailboxes that changed are read again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::Node;
use crate::dispatch::AttachmentId;
use crate::dispatch::limits::ATTACHMENT_REFS_MAX;
use crate::mailbox::MailboxCallError;
use crate::mailbox::request::verbs::{Get, ListFolder, ListFolders};
use dem_proto::DispatchRequest;
use dem_proto::ids::MailboxId;
use dem_proto::mail::GetParts;

/// Mails asked for per `ListFolder` call while scanning.
const SCAN_PAGE: u32 = 500;

/// Why a mailbox's references could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The mailbox refused or failed a read, or answered one with
    /// something else.
    #[error("reading the mailbox: {0}")]
    Call(#[from] MailboxCallError),
}

impl Node {
    /// Renews this host's mailboxes' attachment references forever.
    pub async fn renew_attachment_refs(self: Arc<Self>, keeper_every: Duration) {
        loop {
            self.renew_refs_once().await;
            let grace_ms = self.attachment_grace_ms.load(Relaxed);
            let every = Duration::from_millis(grace_ms / 4).max(keeper_every);
            tokio::time::sleep(every).await;
        }
    }

    /// One round: rescan changed mailboxes, then renew everything they
    /// reference.
    async fn renew_refs_once(&self) {
        let Ok(ids) = self.mailboxes.list() else {
            return;
        };
        let ids: Vec<MailboxId> = ids
            .into_iter()
            .filter(|id| self.mailboxes.moved_to(id).is_none())
            .collect();
        for id in &ids {
            let last_seq = self
                .mailboxes
                .store()
                .and_then(|s| s.last_seq(id.as_str()).ok().flatten());
            // Without a store there is no change signal: always rescan.
            let seq = last_seq.unwrap_or(u64::MAX);
            if last_seq.is_some() && !self.refs().needs_scan(id.as_str(), seq) {
                continue;
            }
            match self.referenced_by(id).await {
                Ok(found) => self.refs().record(id.as_str(), seq, found),
                // Keep renewing what it referenced before.
                Err(e) => {
                    tracing::debug!(mailbox = %id.as_str(), error = %e, "scanning attachment references")
                }
            }
        }
        let here: BTreeSet<String> = ids.iter().map(|id| id.as_str().to_string()).collect();
        let batches = {
            let mut refs = self.refs();
            refs.retain(&here);
            refs.batches(ATTACHMENT_REFS_MAX)
        };
        for ids in batches {
            let n = ids.len();
            if let Err(e) = self
                .session
                .dispatch(&DispatchRequest::AttachmentRefs { ids })
                .await
            {
                tracing::warn!(host = %self.id.short(), attachments = n, error = %e, "renewing attachment references failed");
            }
        }
    }

    fn refs(&self) -> std::sync::MutexGuard<'_, crate::replica::attachment::RefTracker> {
        self.attachment_refs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The attachments the mails of mailbox `id` reference.
    async fn referenced_by(&self, id: &MailboxId) -> Result<BTreeSet<AttachmentId>, ScanError> {
        let folders = self.mailboxes.ask(id, ListFolders).await?;
        let mut found = BTreeSet::new();
        for folder in folders {
            let mut offset = 0u32;
            loop {
                let list = ListFolder {
                    folder: folder.name.clone(),
                    offset,
                    limit: SCAN_PAGE,
                };
                let page = self.mailboxes.ask(id, list).await?;
                for mail in page.items.iter().filter(|m| m.attachment_count > 0) {
                    let get = Get {
                        id: mail.id.clone(),
                        parts: GetParts { message: None },
                    };
                    let read = self.mailboxes.ask(id, get).await?;
                    let refs = read.detail.attachments.iter();
                    found.extend(refs.filter_map(|a| a.hash.parse::<AttachmentId>().ok()));
                }
                let n = u32::try_from(page.items.len()).unwrap_or(u32::MAX);
                offset = offset.saturating_add(n);
                if n == 0 || offset >= page.total {
                    break;
                }
            }
        }
        Ok(found)
    }
}
