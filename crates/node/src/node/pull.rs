//! `Pull`, the owner's order to move their mailbox to a host: the holder
//! checks the order (signature, freshness, signed by the mailbox's owner),
//! relays it to dispatch as `AuthorizeMove`, which grants the target and
//! names its address, meanwhile starts reading the state to ship, and
//! migrates (`migrate.rs`). When the caller says where the target listens,
//! the move itself starts alongside the authorization and only its end
//! waits for the grant (`grant.rs`).

use super::Node;
use super::grant::{AskDispatchError, PendingGrant};
use super::migrate::MigrateError;
use super::serve::{internal, mailbox_id};
use crate::dispatch::Placement;
use crate::mailbox::MovedTo;
use dem_client::now_ms;
use dem_identity::{Freshness, MOVE_ORDER, Signed};
use dem_net::WireError;
use dem_proto::host::NOT_HERE;
use dem_proto::{DispatchRequest, DispatchResponse, HostResponse, MoveOrder};

impl Node {
    /// `Pull`: the owner orders their mailbox moved to the order's host.
    /// `to_addr`: where the caller says that host listens (see
    /// `HostRequest::Pull`).
    pub(super) async fn pull(
        &self,
        order: &Signed<MoveOrder>,
        to_addr: Option<&str>,
    ) -> Result<HostResponse, WireError> {
        let forbidden =
            |e: &dyn std::fmt::Display| WireError::new(WireError::FORBIDDEN, e.to_string());
        let verified = order
            .verify(MOVE_ORDER, now_ms(), Freshness::default())
            .map_err(|e| forbidden(&e))?;
        let MoveOrder { user, to } = verified.body;
        if verified.signer != user {
            return Err(forbidden(&"only a mailbox's owner may move it"));
        }
        let id = mailbox_id(&user)?;
        if let Some(moved) = self.mailboxes.moved_to(&id) {
            return Ok(HostResponse::Moved(moved));
        }
        if !self.mailboxes.contains(&id).map_err(internal)? {
            return Err(WireError::new(
                NOT_HERE,
                "this host does not hold that mailbox",
            ));
        }
        if to == self.id {
            return Ok(HostResponse::Done);
        }
        // Meanwhile the state to ship is read.
        let started = std::time::Instant::now();
        let ahead = self.mailboxes.read_ahead(&id);
        let authorize = async {
            let answer = self
                .session
                .dispatch(&DispatchRequest::AuthorizeMove {
                    order: order.clone(),
                })
                .await;
            tracing::debug!(
                mailbox = %user.short(),
                authorize_ms = started.elapsed().as_secs_f64() * 1e3,
                "dispatch answered the move order"
            );
            match answer {
                Ok(DispatchResponse::Placement(p)) if p.host == to => Ok(p),
                Ok(other) => Err(AskDispatchError::Unexpected(Box::new(other))),
                Err(e) => Err(AskDispatchError::Dispatch(e)),
            }
        };
        // Dispatch's refusal as the move's state machine takes it.
        let authorize = async { authorize.await.map_err(WireError::from) };
        let hint = to_addr.filter(|a| a.parse::<std::net::SocketAddr>().is_ok());
        let moved = match hint {
            // The move starts at once; the end of its stream waits for the
            // grant.
            Some(addr) => {
                let (answer, grant) = PendingGrant::pending();
                let (placement, moved) = tokio::join!(
                    async {
                        let placement = authorize.await;
                        answer.settle(placement.as_ref().map(drop).map_err(Clone::clone));
                        placement
                    },
                    self.migrate_out(user, to, addr, ahead, grant),
                );
                match retry_at(&moved, &placement, addr) {
                    Some(placed) => {
                        tracing::info!(
                            hint = addr,
                            placed,
                            "the move's address hint failed; moving to the placed address"
                        );
                        self.migrate_out(user, to, placed, None, PendingGrant::given())
                            .await
                    }
                    None => moved,
                }
            }
            None => match authorize.await {
                Ok(p) => {
                    self.migrate_out(user, to, &p.addr, ahead, PendingGrant::given())
                        .await
                }
                Err(e) => Err(MigrateError::NotAuthorized(e)),
            },
        };
        match moved {
            Ok(_) => Ok(HostResponse::Done),
            Err(MigrateError::NotHere) => Err(WireError::new(
                NOT_HERE,
                "this host does not hold that mailbox",
            )),
            Err(e @ MigrateError::NotAuthorized(_)) => Err(forbidden(&e)),
            Err(e) => Err(WireError::new(WireError::BUSY, e.to_string())),
        }
    }
}

/// Where to move again after a move to the caller's address `hint`
/// failed: the address dispatch placed the host at, if it granted the
/// move and that is another address (the hint was wrong or stale).
fn retry_at<'p>(
    moved: &Result<MovedTo, MigrateError>,
    placement: &'p Result<Placement, WireError>,
    hint: &str,
) -> Option<&'p str> {
    match (moved, placement) {
        (Err(MigrateError::Target(_)), Ok(p)) if p.addr != hint => Some(&p.addr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::ObjectRef;
    use dem_identity::{HostId, UserId};

    fn placed(addr: &str) -> Result<Placement, WireError> {
        Ok(Placement {
            object: ObjectRef::Mailbox(UserId([1; 32])),
            host: HostId([2; 32]),
            addr: addr.into(),
        })
    }

    #[test]
    fn a_wrong_hint_is_retried_at_the_placed_address_only_once_granted() {
        let unreachable = Err(MigrateError::Target(WireError::new(
            WireError::TIMEOUT,
            "timed out",
        )));
        let not_live = || WireError::new(WireError::FORBIDDEN, "not live");
        let hint = "127.0.0.9:4000";
        assert_eq!(
            retry_at(&unreachable, &placed("127.0.0.2:4000"), hint),
            Some("127.0.0.2:4000")
        );
        // The hint was right: the target itself failed.
        assert_eq!(retry_at(&unreachable, &placed(hint), hint), None);
        // Not granted: nothing to retry.
        assert_eq!(retry_at(&unreachable, &Err(not_live()), hint), None);
        let refused = Err(MigrateError::NotAuthorized(not_live()));
        assert_eq!(retry_at(&refused, &placed("127.0.0.2:4000"), hint), None);
        let paused = Err(MigrateError::Pause(WireError::new(
            WireError::INTERNAL,
            "busy",
        )));
        assert_eq!(retry_at(&paused, &placed("127.0.0.2:4000"), hint), None);
        let moved = Ok(MovedTo {
            host: HostId([2; 32]).to_hex(),
            addr: hint.into(),
            epoch: 2,
        });
        assert_eq!(retry_at(&moved, &placed("127.0.0.2:4000"), hint), None);
    }
}
