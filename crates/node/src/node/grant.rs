//! The authorization of a move, both ends of it.
//!
//! At the source, dispatch's grant may still be on its way while the move
//! starts. An owner's `Pull` that names where the target listens lets the
//! source read, pause and stream the state while the dispatch unit
//! records the grant (one fsync there), instead of one after the other.
//! Only the end of the stream waits for the grant: the target imports and
//! claims the mailbox after the end, so a move that dispatch refuses never
//! gets past the target's staging, which the reset stream throws away. (The target's location update would be refused
//! too: dispatch accepts it only from the grantee.)
//!
//! At the target, the grantee reports the move at the new epoch once it
//! has imported the mailbox durably, with the holder list it looked up
//! while the state streamed in. What each answer means, and what to do
//! when one is lost, the state machines of `dem_core::migration` decide;
//! this file only asks.

use tokio::sync::watch;

use super::Node;
use super::migrate::refusal;
use crate::dispatch::ObjectRef;
use dem_client::{ClientError, SessionError};
use dem_core::migration::{Listing, LocationAnswer};
use dem_identity::{Epoch, HostId, UserId};
use dem_proto::{DispatchRequest, DispatchResponse, WireError};

/// Why dispatch gave no usable answer to what a move asks it: the listing
/// of a mailbox ([`Node::mailbox_listing`]) or the grant of a `Pull`'s
/// target (`pull.rs`).
#[derive(Debug, thiserror::Error)]
pub(super) enum AskDispatchError {
    /// No dispatch unit answered, or one refused.
    #[error(transparent)]
    Dispatch(#[from] SessionError),
    /// A unit answered, but not with what was asked.
    #[error("dispatch answered {0:?}")]
    Unexpected(Box<DispatchResponse>),
}

/// Dispatch's grant of a move, as it arrives: the source's state machine
/// (`dem_core::migration::SourceMove`) decides what it means at each step.
#[derive(Debug)]
pub struct PendingGrant {
    settled: watch::Receiver<Option<Result<(), WireError>>>,
    /// The answer was handed to the move already.
    taken: bool,
}

/// Settles a [`PendingGrant`] with dispatch's answer.
#[derive(Debug)]
pub struct GrantAnswer {
    tx: watch::Sender<Option<Result<(), WireError>>>,
}

impl PendingGrant {
    /// A move dispatch has already granted (or that needs no grant: a
    /// departure's or a failover's placement is one).
    pub fn given() -> Self {
        let (_, settled) = watch::channel(Some(Ok(())));
        PendingGrant {
            settled,
            taken: false,
        }
    }

    /// A grant still being asked for, and the handle that settles it.
    pub fn pending() -> (GrantAnswer, Self) {
        let (tx, settled) = watch::channel(None);
        (
            GrantAnswer { tx },
            PendingGrant {
                settled,
                taken: false,
            },
        )
    }

    /// Dispatch's answer if it has come and was not taken yet: `Ok` grants
    /// the move, an error refuses it.
    pub fn take(&mut self) -> Option<Result<(), WireError>> {
        if self.taken {
            return None;
        }
        let answer = self.settled.borrow().clone()?;
        self.taken = true;
        Some(answer)
    }

    /// Waits for dispatch's answer and takes it; an answer that will not
    /// come (the asking side gave up) is a refusal.
    pub async fn answer(&mut self) -> Result<(), WireError> {
        let answer = match self.settled.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(answer)) => answer.clone(),
            Ok(None) | Err(_) => Err(WireError::new(
                WireError::INTERNAL,
                "the authorization was abandoned",
            )),
        };
        self.taken = true;
        answer
    }
}

impl GrantAnswer {
    /// Settles the grant: `Ok` lets the move finish, an error stops it.
    pub fn settle(self, answer: Result<(), WireError>) {
        // The move may have failed already and dropped its side.
        let _ = self.tx.send(Some(answer));
    }
}

impl Node {
    /// As the target of a move: asks dispatch to record `hosts` (this host
    /// first, as `TargetMove` put them) for `user`'s mailbox at `epoch`.
    /// Dispatch's answer as far as it can be told: a refusal that proves
    /// nothing, or no answer, may hide an update that was taken.
    pub(super) async fn update_location(
        &self,
        user: UserId,
        epoch: Epoch,
        hosts: Vec<HostId>,
    ) -> LocationAnswer {
        let update = DispatchRequest::LocationUpdate {
            object: ObjectRef::Mailbox(user),
            hosts,
            epoch,
        };
        match self.session.dispatch(&update).await {
            Ok(_) => LocationAnswer::Applied,
            Err(SessionError::Dispatch(ClientError::Refused { error, .. })) => {
                LocationAnswer::from_refusal(&error)
            }
            Err(e) => LocationAnswer::Lost(refusal(e)),
        }
    }

    /// Where dispatch says `user`'s mailbox is: its epoch and holders. Both
    /// sides of a move ask it: the target for the holders to report the
    /// move with (a listing below the move's epoch cannot go stale
    /// unnoticed: every change of the list raises the epoch, and dispatch
    /// takes only a strictly higher one), and either side to learn whether
    /// an update whose answer was lost was taken.
    pub(super) async fn mailbox_listing(&self, user: UserId) -> Result<Listing, AskDispatchError> {
        match self
            .session
            .dispatch(&DispatchRequest::LookupUser { user })
            .await
        {
            Ok(DispatchResponse::Mailbox(found)) => Ok(Listing {
                epoch: found.epoch,
                hosts: found.hosts.iter().map(|h| h.host).collect(),
            }),
            Ok(other) => Err(AskDispatchError::Unexpected(Box::new(other))),
            Err(e) => Err(AskDispatchError::Dispatch(e)),
        }
    }
}

impl From<AskDispatchError> for WireError {
    /// What the failure amounts to for a move's state machine.
    fn from(e: AskDispatchError) -> Self {
        match e {
            AskDispatchError::Dispatch(e) => refusal(e),
            e @ AskDispatchError::Unexpected(_) => {
                WireError::new(WireError::INTERNAL, e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_given_grant_is_taken_once() {
        let mut grant = PendingGrant::given();
        assert_eq!(grant.take(), Some(Ok(())));
        assert_eq!(grant.take(), None);
    }

    #[tokio::test]
    async fn a_pending_grant_waits_for_its_answer() {
        let (answer, mut grant) = PendingGrant::pending();
        assert_eq!(grant.take(), None);
        let waiting = tokio::spawn(async move { grant.answer().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        answer.settle(Ok(()));
        assert!(matches!(waiting.await, Ok(Ok(()))));
    }

    #[tokio::test]
    async fn a_refusal_or_a_dropped_answer_refuses_the_move() {
        let (answer, mut grant) = PendingGrant::pending();
        answer.settle(Err(WireError::new(
            WireError::FORBIDDEN,
            "the host is not live",
        )));
        assert!(matches!(grant.take(), Some(Err(e)) if e.message.contains("not live")));
        let (answer, mut grant) = PendingGrant::pending();
        drop(answer);
        assert_eq!(grant.take(), None);
        assert!(grant.answer().await.is_err());
    }
}
