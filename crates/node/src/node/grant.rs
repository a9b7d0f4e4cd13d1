//! The authorization of a move, both ends of it.
//!
//! At the source, dispatch's grant may still be on its way while the move
//! starts. An owner's `Pull` that names where the target listens lets the
//! source read, pause and stream the state while the dispatch unit
//! records the grant (one fsync there), instead of one after the other. Only the end of the stream waits for the grant: the
//! target imports and claims the mailbox after the end, so a move that
//! dispatch refuses never gets past the target's staging, which the reset
//! stream throws away. (The target's location update would be refused
//! too: dispatch accepts it only from the grantee.)
//!
//! At the target, the grantee reports the move at the new epoch once it
//! has imported the mailbox durably, with the holder list it looked up
//! while the state streamed in.

use tokio::sync::watch;

use super::Node;
use super::migrate::MigrateError;
use crate::dispatch::ObjectRef;
use dem_client::SessionError;
use dem_identity::{Epoch, HostId, UserId};
use dem_proto::{DispatchRequest, DispatchResponse};

/// The grant a move waits for before it finishes its stream.
#[derive(Debug)]
pub struct PendingGrant {
    settled: watch::Receiver<Option<Result<(), String>>>,
}

/// Settles a [`PendingGrant`] with dispatch's answer.
#[derive(Debug)]
pub struct GrantAnswer {
    tx: watch::Sender<Option<Result<(), String>>>,
}

impl PendingGrant {
    /// A move dispatch has already granted (or that needs no grant: a
    /// departure's or a failover's placement is one).
    pub fn given() -> Self {
        let (_, settled) = watch::channel(Some(Ok(())));
        PendingGrant { settled }
    }

    /// A grant still being asked for, and the handle that settles it.
    pub fn pending() -> (GrantAnswer, Self) {
        let (tx, settled) = watch::channel(None);
        (GrantAnswer { tx }, PendingGrant { settled })
    }

    /// Waits for dispatch's answer; a refusal, or an answer that will not
    /// come, is an error.
    pub async fn granted(&mut self) -> Result<(), MigrateError> {
        match self.settled.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(Ok(()))) => Ok(()),
            Ok(Some(Err(e))) => Err(MigrateError::NotAuthorized(e.clone())),
            Ok(None) | Err(_) => Err(MigrateError::NotAuthorized(
                "the authorization was abandoned".into(),
            )),
        }
    }

    /// Dispatch's refusal, if it has already come: no need to pause the
    /// mailbox and send its state only to throw it away.
    pub fn refused(&self) -> Option<MigrateError> {
        match &*self.settled.borrow() {
            Some(Err(e)) => Some(MigrateError::NotAuthorized(e.clone())),
            Some(Ok(())) | None => None,
        }
    }
}

impl GrantAnswer {
    /// Settles the grant: `Ok` lets the move finish, an error stops it.
    pub fn settle(self, answer: Result<(), String>) {
        // The move may have failed already and dropped its side.
        let _ = self.tx.send(Some(answer));
    }
}

impl Node {
    /// As the target of a move from `from`: reports to dispatch that this
    /// host now holds `user`'s mailbox in `from`'s place at `epoch`, the
    /// other replicas staying. `listed`: the holders as looked up while the
    /// state streamed in (see `holders_before`); else they are
    /// looked up now.
    pub(super) async fn take_over_from(
        &self,
        user: UserId,
        from: HostId,
        epoch: Epoch,
        listed: Option<Vec<HostId>>,
    ) -> Result<(), SessionError> {
        let mut hosts = match listed {
            Some(hosts) => hosts,
            None => self.holders_before(user, Epoch(u64::MAX)).await?,
        };
        hosts.retain(|h| *h != from && *h != self.id);
        hosts.insert(0, self.id);
        self.session
            .dispatch(&DispatchRequest::LocationUpdate {
                object: ObjectRef::Mailbox(user),
                hosts,
                epoch,
            })
            .await
            .map(drop)
    }

    /// The hosts dispatch lists for `user`'s mailbox at an epoch below
    /// `epoch`. A listing looked up ahead of the update that claims
    /// `epoch` cannot go stale unnoticed: every change of the list raises
    /// the epoch, and dispatch takes only a strictly higher one.
    pub(super) async fn holders_before(
        &self,
        user: UserId,
        epoch: Epoch,
    ) -> Result<Vec<HostId>, SessionError> {
        match self
            .session
            .dispatch(&DispatchRequest::LookupUser { user })
            .await?
        {
            DispatchResponse::Mailbox(found) if found.epoch < epoch => {
                Ok(found.hosts.iter().map(|h| h.host).collect())
            }
            other => Err(SessionError::Unexpected(format!(
                "dispatch answered {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_grant_is_granted_at_once() {
        let mut grant = PendingGrant::given();
        assert!(grant.refused().is_none());
        assert!(grant.granted().await.is_ok());
    }

    #[tokio::test]
    async fn a_pending_grant_waits_for_its_answer() {
        let (answer, mut grant) = PendingGrant::pending();
        let waiting = tokio::spawn(async move { grant.granted().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        answer.settle(Ok(()));
        assert!(matches!(waiting.await, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn a_refusal_or_a_dropped_answer_stops_the_move() {
        let (answer, mut grant) = PendingGrant::pending();
        assert!(grant.refused().is_none());
        answer.settle(Err("the host is not live".into()));
        assert!(grant.refused().is_some());
        let refused = grant.granted().await;
        assert!(
            matches!(&refused, Err(MigrateError::NotAuthorized(e)) if e.contains("not live")),
            "{refused:?}"
        );
        // Asked again (a delta move falling back to the whole state), the
        // answer is the same.
        assert!(grant.granted().await.is_err());
        let (answer, mut grant) = PendingGrant::pending();
        drop(answer);
        assert!(matches!(
            grant.granted().await,
            Err(MigrateError::NotAuthorized(_))
        ));
    }
}
