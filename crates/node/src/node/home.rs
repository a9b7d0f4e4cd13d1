//! The owner's host (`dem host --home USERHOME`, paper IV-B): once joined,
//! the host tells dispatch it is its owner's home (`Home`, signed by the
//! owner's key, so no host can claim to be someone's home) and pulls the
//! owner's mailbox here by an explicit migration: a `Pull` to the current
//! holder with a `MoveOrder` the owner signed, naming this host. Mail keeps
//! arriving throughout: calls queue at the holder during the move and are
//! then answered "moved", which senders follow.

use std::time::Duration;

use tracing::Instrument as _;

use super::Node;
use dem_client::{SessionError, now_ms};
use dem_identity::{HOME, HostId, KeyPair, MOVE_ORDER, SignError, Signed};
use dem_proto::{DispatchRequest, DispatchResponse, HostRequest, HostResponse, MoveOrder};

/// The first pause between attempts at bringing the mailbox home (the
/// holder may still be joining, or be briefly unreachable).
const HOME_PULL_RETRY_MIN: Duration = Duration::from_millis(500);
/// The longest pause: the host keeps trying for as long as it runs, since
/// a mailbox left away from its owner's host would stay away (a dispatch
/// unit down for a while must not strand it), but not so often that a
/// long outage floods the logs and the units.
const HOME_PULL_RETRY_MAX: Duration = Duration::from_secs(30);

/// The pauses between attempts: doubling from the least to the most.
fn home_pull_pauses() -> impl Iterator<Item = Duration> {
    std::iter::successors(Some(HOME_PULL_RETRY_MIN), |d| {
        Some(d.saturating_mul(2).min(HOME_PULL_RETRY_MAX))
    })
}

/// Why `Home` could not be signed and told to dispatch
/// ([`Node::announce_home`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum AnnounceHomeError {
    /// The owner's key could not sign it.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// No dispatch unit took it.
    #[error(transparent)]
    Dispatch(#[from] SessionError),
}

/// Why one attempt at bringing the owner's mailbox home failed
/// ([`Node::pull_home_once`]); the next attempt follows a pause.
#[derive(Debug, thiserror::Error)]
enum PullHomeError {
    /// This host could not be announced as the owner's home.
    #[error(transparent)]
    Announce(#[from] AnnounceHomeError),
    /// No dispatch unit answered the lookup of the mailbox.
    #[error(transparent)]
    Lookup(SessionError),
    /// Dispatch answered the lookup with something else than the mailbox.
    #[error("dispatch answered {0:?}")]
    LookupAnswer(Box<DispatchResponse>),
    /// Every listed holder is offline.
    #[error("no online host holds the mailbox")]
    NoOnlineHolder,
    /// The owner's key could not sign the move order.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The holder did not take the `Pull`.
    #[error(transparent)]
    Pull(SessionError),
    /// The holder answered the `Pull` with something else than a move.
    #[error("the holder answered {0:?}")]
    PullAnswer(Box<HostResponse>),
}

impl Node {
    /// Signs `Home` for `owner` (this host, or `None` when leaving).
    pub(super) async fn announce_home(
        &self,
        owner: &KeyPair,
        home: Option<HostId>,
    ) -> Result<(), AnnounceHomeError> {
        let user = owner.user_id();
        let signed = Signed::sign(owner, HOME, now_ms(), &home)?;
        self.session
            .dispatch(&DispatchRequest::Home { user, home: signed })
            .await?;
        Ok(())
    }

    /// Announces this host as `owner`'s home and pulls their mailbox here,
    /// retrying until it is here (the task is aborted when the host
    /// leaves).
    pub async fn go_home(&self, owner: &KeyPair) {
        let user = owner.user_id();
        let span = tracing::info_span!("go-home", mailbox = %user.short(), host = %self.id.short());
        async {
            for (attempt, pause) in (1u64..).zip(home_pull_pauses()) {
                match self.pull_home_once(owner).await {
                    Ok(true) => {
                        tracing::info!("the owner's mailbox is home");
                        return;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let retry_ms = pause.as_millis() as u64;
                        tracing::info!(attempt, retry_ms, error = %e, "mailbox not home yet");
                    }
                }
                tokio::time::sleep(pause).await;
            }
        }
        .instrument(span)
        .await
    }

    /// One attempt: `Ok(true)` once the mailbox is here.
    async fn pull_home_once(&self, owner: &KeyPair) -> Result<bool, PullHomeError> {
        let user = owner.user_id();
        self.announce_home(owner, Some(self.id)).await?;
        let found = match self
            .session
            .dispatch(&DispatchRequest::LookupUser { user })
            .await
        {
            Ok(DispatchResponse::Mailbox(m)) => m,
            Ok(other) => return Err(PullHomeError::LookupAnswer(Box::new(other))),
            Err(e) => return Err(PullHomeError::Lookup(e)),
        };
        if found.hosts.iter().any(|h| h.host == self.id) {
            return Ok(true);
        }
        let Some((holder, addr)) = found
            .hosts
            .iter()
            .find_map(|h| h.addr.clone().filter(|_| h.online).map(|a| (h.host, a)))
        else {
            return Err(PullHomeError::NoOnlineHolder);
        };
        // A copy kept from before (this host was away) is no longer
        // listed; keep the keeper from discarding it while the holder
        // moves the mailbox here, so the move ships only what it lacks.
        if let Ok(id) = super::serve::mailbox_id(&user)
            && self.mailboxes.contains(&id).unwrap_or(false)
        {
            self.keeper_state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .copied(&id);
        }
        let order = MoveOrder { user, to: self.id };
        let signed = Signed::sign(owner, MOVE_ORDER, now_ms(), &order)?;
        match self
            .session
            .host_request(
                &addr,
                holder,
                &HostRequest::Pull {
                    order: signed,
                    to_addr: Some(self.addr.clone()),
                },
            )
            .await
        {
            Ok(HostResponse::Done | HostResponse::Imported { .. }) => Ok(true),
            Ok(other) => Err(PullHomeError::PullAnswer(Box::new(other))),
            Err(e) => Err(PullHomeError::Pull(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_most_and_never_end() {
        let pauses: Vec<Duration> = home_pull_pauses().take(12).collect();
        assert_eq!(pauses.first(), Some(&HOME_PULL_RETRY_MIN));
        assert_eq!(pauses.get(1), Some(&(HOME_PULL_RETRY_MIN * 2)));
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses.last(), Some(&HOME_PULL_RETRY_MAX));
        assert_eq!(home_pull_pauses().nth(10_000), Some(HOME_PULL_RETRY_MAX));
    }
}
