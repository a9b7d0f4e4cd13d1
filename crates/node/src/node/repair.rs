//! Repairing a damaged or missing message blob from another replica.
//!
//! A host reads a mail's stored message from its blob store, which checks
//! it against its hash. When the check fails (a flipped bit on disk) or the
//! blob is missing (a replica that got a delivery whose bytes its sender no
//! longer held), the owner is told to read another replica, and this host
//! fetches the blob from a listed replica of the mailbox and writes it over
//! its copy. Only a listed replica may ask, and only for a blob the
//! mailbox names here: a host never hands out mail of mailboxes the asker
//! does not hold.

use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteBuf;

use super::Node;
use super::serve::{internal, mailbox_id};
use dem_identity::{HostId, UserId};
use dem_net::WireError;
use dem_proto::HostRequest;
use dem_proto::HostResponse;
use dem_proto::host::{MISSING_MESSAGES_MAX, NOT_HERE};

/// How long one replica gets to send a blob.
const MESSAGE_GET_TIMEOUT: Duration = Duration::from_secs(10);

impl Node {
    /// `MessageGet`: a listed replica of `user`'s mailbox asks for a blob
    /// the mailbox names here.
    pub(super) async fn message_get(
        &self,
        user: UserId,
        hash: [u8; 32],
        from: HostId,
    ) -> Result<HostResponse, WireError> {
        let id = mailbox_id(&user)?;
        if !self.is_holder(user, from).await? {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                "only a listed replica of the mailbox may fetch its messages",
            ));
        }
        let store = self
            .mailboxes
            .store()
            .ok_or_else(|| WireError::new(NOT_HERE, "this host keeps no messages"))?;
        let named = store.names_message(id.as_str(), &hash).map_err(internal)?;
        if !named {
            return Err(WireError::new(
                NOT_HERE,
                "this host's copy of the mailbox names no such message",
            ));
        }
        match store.message(&hash) {
            Ok(Some(bytes)) => Ok(HostResponse::Message(ByteBuf::from(bytes))),
            Ok(None) => Err(WireError::new(NOT_HERE, "this host lacks that message too")),
            Err(e) => Err(WireError::new(WireError::INTERNAL, e.to_string())),
        }
    }

    /// `MissingMessages`: which of these blobs this host's copy of `user`'s
    /// mailbox does not name (all of them if it holds no copy). Only a
    /// listed replica may ask: the answer tells which mail a host holds.
    pub(super) async fn missing_messages(
        &self,
        user: UserId,
        hashes: &[u8],
        from: HostId,
    ) -> Result<HostResponse, WireError> {
        if !hashes.len().is_multiple_of(32) || hashes.len() / 32 > MISSING_MESSAGES_MAX {
            return Err(WireError::new(
                WireError::BAD_REQUEST,
                format!("at most {MISSING_MESSAGES_MAX} hashes of 32 bytes each"),
            ));
        }
        let id = mailbox_id(&user)?;
        if !self.is_holder(user, from).await? {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                "only a listed replica of the mailbox may ask which messages this host lacks",
            ));
        }
        let mut missing = Vec::new();
        let store = self.mailboxes.store();
        for h in hashes.chunks_exact(32) {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(h);
            let named = match store {
                Some(s) => s.names_message(id.as_str(), &hash).map_err(internal)?,
                None => false,
            };
            if !named {
                missing.extend_from_slice(h);
            }
        }
        Ok(HostResponse::MissingMessages(ByteBuf::from(missing)))
    }

    /// Fetches blob `hash` of `user`'s mailbox from another listed replica
    /// and writes it over this host's copy; in the background, so the
    /// owner's read is answered at once (it reads another replica).
    pub(super) fn repair_message(self: &Arc<Self>, user: UserId, hash: [u8; 32]) {
        let node = self.clone();
        tokio::spawn(async move {
            match node.repair_message_now(user, hash).await {
                Ok(from) => tracing::info!(
                    mailbox = %user.short(),
                    message = %blake3::Hash::from_bytes(hash).to_hex(),
                    from = %from.short(),
                    "repaired a message from another replica"
                ),
                Err(e) => tracing::warn!(
                    mailbox = %user.short(),
                    message = %blake3::Hash::from_bytes(hash).to_hex(),
                    "could not repair a message: {}", e.message
                ),
            }
        });
    }

    async fn repair_message_now(&self, user: UserId, hash: [u8; 32]) -> Result<HostId, WireError> {
        let id = mailbox_id(&user)?;
        let store = self
            .mailboxes
            .store()
            .ok_or_else(|| WireError::new(NOT_HERE, "no store"))?
            .clone();
        let listing = self.listing(user, true).await?;
        let req = HostRequest::MessageGet {
            mailbox: user,
            hash,
        };
        let mut last = WireError::new(NOT_HERE, "no other replica is listed");
        for peer in listing.members.iter().filter(|m| m.host != self.id) {
            let Some(addr) = &peer.addr else { continue };
            let asked = tokio::time::timeout(
                MESSAGE_GET_TIMEOUT,
                self.session.host_request(addr, peer.host, &req),
            )
            .await;
            let bytes = match asked {
                Ok(Ok(HostResponse::Message(bytes))) => bytes.into_vec(),
                Ok(Ok(other)) => {
                    last = internal(format!("answered {other:?}"));
                    continue;
                }
                Ok(Err(e)) => {
                    last = WireError::new(WireError::BUSY, e.to_string());
                    continue;
                }
                Err(_) => {
                    last = WireError::new(WireError::BUSY, "no answer in time");
                    continue;
                }
            };
            // A replica that sends other bytes gets nothing stored.
            if blake3::hash(&bytes).as_bytes() != &hash {
                last = WireError::new(
                    WireError::BAD_REQUEST,
                    format!("host {} sent bytes of another message", peer.host.short()),
                );
                continue;
            }
            store
                .repair_message(id.as_str(), bytes)
                .await
                .map_err(internal)?;
            return Ok(peer.host);
        }
        Err(last)
    }
}
