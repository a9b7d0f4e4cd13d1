//! Graceful leave (paper IV-B): on SIGTERM or Ctrl-C the host
//! asks dispatch for a departure plan (`Leave`), moves every mailbox
//! (`migrate`) and every attachment (an `AttachmentPut` stream to the
//! planned host, which then reports the location; the local copy is
//! removed after) to its planned target, asks again for whatever is still
//! here (a bounded number of rounds), and reports `Left` once dispatch
//! places nothing on it. A home host also signs `Home { None }` for its
//! owner.

use std::time::Duration;

use tracing::Instrument as _;

use super::grant::PendingGrant;
use super::transfer::CopyAttachmentError;
use super::{MigrateError, Node};
use crate::dispatch::{AttachmentId, ObjectRef};
use dem_client::SessionError;
use dem_identity::HostId;
use dem_proto::{DispatchRequest, DispatchResponse};
use dem_store::attachments::RemoveError;

/// Planning rounds before the host gives up moving what is left.
const LEAVE_ROUNDS: u32 = 10;
/// Pause between rounds (lets a new host join or a grant expire).
const LEAVE_RETRY: Duration = Duration::from_millis(500);

/// Why a leave did not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    /// Objects that could not be moved after every round.
    #[error("{0} objects could not be moved off this host")]
    Stranded(usize),
    /// Dispatch refused or did not answer.
    #[error("the dispatch unit: {0}")]
    Dispatch(#[source] SessionError),
    /// Dispatch answered the `Leave` with something else than a plan.
    #[error("the dispatch unit: answered {0:?}")]
    Unexpected(Box<DispatchResponse>),
}

/// Why one object could not be moved off this host (it is asked for again
/// in the next round).
#[derive(Debug, thiserror::Error)]
enum MoveOffError {
    /// The mailbox's migration failed.
    #[error(transparent)]
    Mailbox(#[from] MigrateError),
    /// The attachment's move failed.
    #[error(transparent)]
    Attachment(#[from] MoveAttachmentError),
}

/// Why an attachment could not be moved to its planned host
/// ([`Node::move_attachment`]).
#[derive(Debug, thiserror::Error)]
enum MoveAttachmentError {
    /// The copy to the target failed; the local copy is kept.
    #[error(transparent)]
    Copy(#[from] CopyAttachmentError),
    /// The blocking removal task panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The target holds it, but the local copy could not be removed.
    #[error(transparent)]
    Remove(#[from] RemoveError),
}

impl Node {
    /// Moves everything off and tells dispatch this host left.
    pub async fn leave(&self) -> Result<(), LeaveError> {
        let span = tracing::info_span!("leave", host = %self.id.short());
        async {
            if let Some(owner) = &self.owner
                && let Err(e) = self.announce_home(owner, None).await
            {
                tracing::warn!(error = %e, "could not sign the owner away");
            }
            let mut stranded = 0;
            for round in 1..=LEAVE_ROUNDS {
                let plan = match self.session.dispatch(&DispatchRequest::Leave).await {
                    Ok(DispatchResponse::Plan(p)) => p,
                    Ok(other) => return Err(LeaveError::Unexpected(Box::new(other))),
                    Err(e) => return Err(LeaveError::Dispatch(e)),
                };
                stranded = plan.unplaced.len();
                if plan.moves.is_empty() && plan.unplaced.is_empty() {
                    break;
                }
                for mv in plan.moves {
                    let moved = match &mv.object {
                        ObjectRef::Mailbox(user) => self
                            .migrate_out(*user, mv.host, &mv.addr, None, PendingGrant::given())
                            .await
                            .map(drop)
                            .map_err(MoveOffError::from),
                        ObjectRef::Attachment(id) => self
                            .move_attachment(id, mv.host, &mv.addr)
                            .await
                            .map_err(MoveOffError::from),
                    };
                    if let Err(e) = moved {
                        stranded += 1;
                        tracing::warn!(round, object = %mv.object, to = %mv.host.short(), error = %e, "move failed; will ask again");
                    }
                }
                if stranded == 0 && self.holds_nothing() {
                    break;
                }
                tokio::time::sleep(LEAVE_RETRY).await;
            }
            match self.session.dispatch(&DispatchRequest::Left).await {
                Ok(_) => {}
                Err(e) => return Err(LeaveError::Dispatch(e)),
            }
            if stranded > 0 {
                return Err(LeaveError::Stranded(stranded));
            }
            tracing::info!("left: everything moved off");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// No mailbox and no attachment left here.
    fn holds_nothing(&self) -> bool {
        self.mailboxes.list().is_ok_and(|l| l.is_empty())
            && self.attachments.list().is_ok_and(|l| l.is_empty())
    }

    /// Streams attachment `id` to `to`, which records the location, then
    /// drops the local copy.
    async fn move_attachment(
        &self,
        id: &AttachmentId,
        to: HostId,
        addr: &str,
    ) -> Result<(), MoveAttachmentError> {
        // Probed and bounded in time: the target may have restarted behind
        // a cached connection.
        self.copy_attachment(id, to, addr, true).await?;
        let local = *id;
        let store = self.attachments.clone();
        tokio::task::spawn_blocking(move || store.remove(&local)).await??;
        tracing::info!(attachment = %id, to = %to.short(), "attachment moved");
        Ok(())
    }
}
