//! The receiving side of mailbox replication: `Sync` (ops from a listed
//! replica, applied in order after fetching any plugin code they install),
//! `Copy` (a whole state, taken only if it covers this copy) and
//! `Replicas` (what this host holds, for `dem admin status`, unlisted
//! copies held back included). The pushing
//! side, links and acknowledgement, is `sync.rs`.

use std::sync::Arc;

use serde_bytes::ByteBuf;

use super::Node;
use super::serve::{internal, mailbox_id};
use super::sync::SYNC_OPS_MAX;
use crate::mailbox::MailboxCallError;
use crate::replica::{VV_ORIGINS_MAX, VersionVector};
use dem_identity::{HostId, UserId};
use dem_net::{Exchange, WireError};
use dem_proto::HostResponse;
use dem_proto::export::ExportHeader;
use dem_proto::host::NOT_HERE;
use dem_proto::host::ReplicaState;
use dem_proto::mailbox::verbs;

impl Node {
    /// `Sync` from another replica.
    pub(super) async fn handle_sync(
        &self,
        user: UserId,
        ops: Vec<ByteBuf>,
        messages: Vec<ByteBuf>,
        from: HostId,
    ) -> Result<HostResponse, WireError> {
        // Each op names at most one message: more blobs than ops is
        // someone filling this host's store.
        if messages.len() > ops.len() {
            return Err(WireError::new(
                WireError::BAD_REQUEST,
                format!("{} messages for {} ops", messages.len(), ops.len()),
            ));
        }
        if ops.len() > SYNC_OPS_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                format!("{} ops, at most {SYNC_OPS_MAX}", ops.len()),
            ));
        }
        let id = mailbox_id(&user)?;
        if !self.mailboxes.contains(&id).map_err(internal)? {
            return Err(WireError::new(
                NOT_HERE,
                "this host does not hold that mailbox",
            ));
        }
        if !self.is_holder(user, from).await? {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                "only a listed replica of the mailbox may sync it",
            ));
        }
        self.fetch_plugin_code(user, &ops, from).await;
        let vv = self
            .mailboxes
            .apply(
                &id,
                ops.into_iter().map(ByteBuf::into_vec).collect(),
                messages.into_iter().map(ByteBuf::into_vec).collect(),
            )
            .await
            .map_err(|e| match e {
                MailboxCallError::Unknown(_) | MailboxCallError::Moved { .. } => {
                    WireError::new(NOT_HERE, "this host does not hold that mailbox")
                }
                MailboxCallError::Import(m) => {
                    WireError::new(WireError::BAD_REQUEST, m.to_string())
                }
                e => internal(e),
            })?;
        Ok(HostResponse::Synced { vv })
    }

    /// `Copy` from another replica: a whole state follows.
    pub(super) async fn handle_copy(
        self: Arc<Self>,
        header: Box<ExportHeader>,
        mut ex: Exchange,
    ) -> dem_net::Result<()> {
        let answer = self.receive_copy(&header, &mut ex).await;
        match answer {
            Ok(r) => ex.reply(&r).await,
            Err(e) => {
                tracing::warn!(error = %e.message, "refused a replica copy");
                ex.reply_err(&e).await
            }
        }
    }

    async fn receive_copy(
        &self,
        header: &ExportHeader,
        ex: &mut Exchange,
    ) -> Result<HostResponse, WireError> {
        let from = HostId(ex.peer_key);
        let user: UserId = header.mailbox.as_str().parse().map_err(|_| {
            WireError::new(WireError::BAD_REQUEST, "the mailbox id is not a user key")
        })?;
        if !self.is_holder(user, from).await? {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                "only a listed replica of the mailbox may copy it here",
            ));
        }
        let (_, state) = self.receive_export(header, ex).await?;
        let incoming = state
            .vv()
            .map_err(|e| WireError::new(WireError::BAD_REQUEST, e.to_string()))?;
        if incoming.len() > VV_ORIGINS_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                "version vector too long",
            ));
        }
        let id = header.mailbox.clone();
        let replace = self.mailboxes.contains(&id).map_err(internal)?;
        if replace {
            let (_, _, ours) = self
                .mailboxes
                .since(&id, VersionVector::new(), 0)
                .await
                .map_err(internal)?;
            if !incoming.covers(&ours) {
                return Err(WireError::new(
                    dem_proto::dispatch::CONFLICT,
                    format!(
                        "this replica has ops the copy lacks ({ours} against {incoming}); sync first"
                    ),
                ));
            }
        }
        let log_position = state.last_seq();
        self.mailboxes
            .import(&id, state, replace)
            .await
            .map_err(internal)?;
        self.keeper_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .copied(&id);
        tracing::info!(mailbox = %user.short(), host = %self.id.short(), from = %from.short(), "took a replica copy");
        Ok(HostResponse::Imported { log_position })
    }

    /// `Replicas`: what this host holds, with version vectors.
    pub(super) async fn replicas(&self) -> Result<HostResponse, WireError> {
        let mut out = Vec::new();
        for id in self.mailboxes.list().map_err(internal)? {
            let Ok(user) = id.as_str().parse::<UserId>() else {
                continue;
            };
            if let Ok((_, _, vv)) = self.mailboxes.since(&id, VersionVector::new(), 0).await {
                let state_digest = self.mailboxes.state_digest(&id).await.ok();
                let held_back = self
                    .keeper_state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .held_back(&id);
                out.push(ReplicaState {
                    user,
                    vv,
                    state_digest,
                    held_back,
                });
            }
        }
        Ok(HostResponse::Replicas(out))
    }
}

impl Node {
    /// `Describe`: what an administrator may see of this host's copy of
    /// `user`'s mailbox, asked by `peer`, which must be a dispatch unit
    /// of this host's backbone: the counts and plugin names are no mail,
    /// but they are nobody else's business.
    pub(super) async fn describe(
        &self,
        user: UserId,
        peer: [u8; 32],
    ) -> Result<HostResponse, WireError> {
        let unit = self
            .session
            .dispatch_units()
            .iter()
            .any(|(_, key)| key.is_some_and(|k| k.0 == peer));
        if !unit {
            return Err(WireError::new(
                WireError::FORBIDDEN,
                "only a dispatch unit of this network may describe a mailbox",
            ));
        }
        let id = super::serve::mailbox_id(&user)?;
        if self.mailboxes.moved_to(&id).is_some()
            || !self.mailboxes.contains(&id).map_err(internal)?
        {
            return Ok(HostResponse::Described(None));
        }
        let (_, _, vv) = self
            .mailboxes
            .since(&id, VersionVector::new(), 0)
            .await
            .map_err(internal)?;
        let stats = self
            .mailboxes
            .ask(&id, verbs::Stats {})
            .await
            .map_err(internal)?;
        let mut plugins = self
            .mailboxes
            .ask(&id, verbs::ListPlugins {})
            .await
            .map_err(internal)?;
        plugins.sort_by_key(|p| p.order);
        let plugins = plugins.into_iter().map(|p| (p.name, p.code_hash)).collect();
        Ok(HostResponse::Described(Some(Box::new(
            dem_proto::host::MailboxDescription { vv, stats, plugins },
        ))))
    }
}
