//! `Pull(Signed<MoveOrder>)`, the owner's order to move their mailbox to
//! a host: the holder checks the order (signature, freshness, signed by
//! the mailbox's owner), relays it to dispatch as `AuthorizeMove`, which
//! grants the target and names its address, meanwhile starts reading the
//! state to ship, and migrates (`migrate.rs`).

use super::Node;
use super::migrate::MigrateError;
use super::serve::{internal, mailbox_id};
use crate::client::mailbox_ref::NOT_HERE;
use crate::client::now_ms;
use crate::identity::{Freshness, MOVE_ORDER, Signed};
use crate::net::WireError;
use crate::proto::{DispatchRequest, DispatchResponse, HostResponse, MoveOrder};

impl Node {
    /// `Pull`: the owner orders their mailbox moved to the order's host.
    pub(super) async fn pull(&self, order: &Signed<MoveOrder>) -> Result<HostResponse, WireError> {
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
        let placement = match self
            .session
            .dispatch(&DispatchRequest::AuthorizeMove {
                order: order.clone(),
            })
            .await
        {
            Ok(DispatchResponse::Placement(p)) => p,
            Ok(other) => return Err(internal(format!("dispatch answered {other:?}"))),
            Err(e) => return Err(forbidden(&format!("the move was not authorized: {e}"))),
        };
        tracing::debug!(
            mailbox = %user.short(),
            authorize_ms = started.elapsed().as_secs_f64() * 1e3,
            "dispatch authorized the move"
        );
        match self
            .migrate_out(user, placement.host, &placement.addr, ahead)
            .await
        {
            Ok(_) => Ok(HostResponse::Done),
            Err(MigrateError::NotHere) => Err(WireError::new(
                NOT_HERE,
                "this host does not hold that mailbox",
            )),
            Err(e) => Err(WireError::new(WireError::BUSY, e.to_string())),
        }
    }
}
