//! The host's answers, one function per `HostRequest` kind. Each checks the
//! request (`verify`), runs it on the mailbox registry or the attachment
//! store, and answers on the exchange; refusals are `WireError`s with a
//! sentence a user can act on.

use std::sync::Arc;

use tracing::Instrument as _;

use super::traffic::Kind;
use super::{Node, verify};
use crate::dispatch::ObjectRef;
use crate::mailbox::{Incoming, MailboxCallError};
use dem_client::now_ms;
use dem_identity::{Epoch, HostId, SealedMail, Signed, UserId};
use dem_net::{Exchange, Result, WireError};
use dem_proto::host::NOT_HERE;
use dem_proto::host::PluginUpload;
use dem_proto::ids::MailboxId;
use dem_proto::{
    CreateOrder, DispatchRequest, DispatchResponse, HostRequest, HostResponse, OwnerCall,
    SignedMail,
};

/// Longest plugin name accepted.
const PLUGIN_NAME_BYTES_MAX: usize = 64;

impl Node {
    /// Answers one request.
    pub(super) async fn handle(self: Arc<Self>, req: HostRequest, mut ex: Exchange) -> Result<()> {
        self.count_replication(&req);
        let kind = request_kind(&req);
        if streams_itself(&req) {
            // It answers (and refuses) on its own stream.
            self.metrics.request(kind, None);
        }
        let answer = match req {
            HostRequest::Owner(call) => self.owner(&call).await,
            HostRequest::Create(order) => self.create(&order).await,
            HostRequest::Deliver { to, mail } => {
                let started = std::time::Instant::now();
                let delivered = self.deliver(to, &mail).await;
                self.count_delivery(&delivered, started);
                delivered
            }
            HostRequest::DeliverSealed { mail } => {
                let started = std::time::Instant::now();
                let delivered = self.deliver_sealed(*mail).await;
                self.count_delivery(&delivered, started);
                delivered
            }
            HostRequest::PluginAdd(upload) => self.plugin_add(&upload).await,
            HostRequest::AttachmentPut {
                id,
                size_bytes,
                name,
                media_type,
            } => {
                return self
                    .attachment_put(id, size_bytes, name, media_type, ex)
                    .await;
            }
            HostRequest::AttachmentCopy {
                id,
                size_bytes,
                name,
                media_type,
            } => {
                return self
                    .attachment_copy_in(id, size_bytes, name, media_type, ex)
                    .await;
            }
            HostRequest::AttachmentGet { id, start, end } => {
                return self.attachment_get(id, start, end, ex).await;
            }
            HostRequest::Migrate { header, epoch } => {
                return self.migrate_in(header, epoch, ex).await;
            }
            HostRequest::MissingCode { hashes } => self.missing_code(&hashes),
            HostRequest::Pull { order, to_addr } => self.pull(&order, to_addr.as_deref()).await,
            HostRequest::Sync {
                mailbox,
                ops,
                messages,
            } => {
                self.handle_sync(mailbox, ops, messages, HostId(ex.peer_key))
                    .await
            }
            HostRequest::HandBack {
                mailbox,
                ops,
                messages,
            } => {
                self.handle_hand_back(mailbox, ops, messages, HostId(ex.peer_key))
                    .await
            }
            HostRequest::Copy { header } => return self.handle_copy(header, ex).await,
            HostRequest::Replicas => self.replicas().await,
            HostRequest::HeldBack => {
                let max = dem_proto::host::HELD_BACK_ATTACHMENTS_MAX;
                let attachments = self.held_back_attachments(max);
                Ok(HostResponse::HeldBack { attachments })
            }
            HostRequest::Holds { mailbox } => self.holds(mailbox).await,
            HostRequest::MoveDelta(header) => return self.move_delta_in(header, ex).await,
            HostRequest::Traffic => Ok(HostResponse::Traffic(self.traffic.snapshot())),
            HostRequest::CodeGet { hash } => self.code_get(&hash),
            HostRequest::Describe { mailbox } => self.describe(mailbox, ex.peer_key).await,
            HostRequest::MessageGet { mailbox, hash } => {
                self.message_get(mailbox, hash, HostId(ex.peer_key)).await
            }
            HostRequest::MissingMessages { mailbox, hashes } => {
                self.missing_messages(mailbox, &hashes, HostId(ex.peer_key))
                    .await
            }
        };
        self.metrics
            .request(kind, answer.as_ref().err().map(|e| e.code.number()));
        match answer {
            Ok(r) => ex.reply(&r).await,
            Err(e) => ex.reply_err(&e).await,
        }
    }

    /// Counts the request frames of replication traffic (their streamed
    /// frames are counted where they are read).
    fn count_replication(&self, req: &HostRequest) {
        let kind = match req {
            HostRequest::Sync { .. } => Kind::Sync,
            HostRequest::HandBack { .. } => Kind::HandBack,
            HostRequest::Copy { .. } => {
                self.traffic.copy_received();
                Kind::Full
            }
            HostRequest::Migrate { .. } => {
                self.traffic.full_move_received();
                Kind::Full
            }
            HostRequest::MoveDelta(_) => {
                self.traffic.delta_move_received();
                Kind::Delta
            }
            _ => return,
        };
        self.traffic.request(kind, req);
    }

    async fn owner(self: &Arc<Self>, call: &Signed<OwnerCall>) -> Result<HostResponse, WireError> {
        let checked = {
            let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
            verify::owner_call(call, now_ms(), &mut replay)
        }
        .map_err(forbidden)?;
        let id = mailbox_id(&checked.mailbox)?;
        let span = tracing::debug_span!("owner", mailbox = %checked.mailbox.short(), host = %self.id.short(), call = checked.request.name());
        async {
            let user = checked.mailbox;
            match self.mailboxes.call_tracked(&id, checked.request).await {
                Ok(t) => {
                    if let Some(op) = t.op {
                        self.replicate(user, op).await?;
                    }
                    Ok(HostResponse::Reply(Box::new(t.response)))
                }
                Err(MailboxCallError::MessageUnavailable { hash, reason }) => {
                    if let Some(h) = dem_proto::mail::hash_from_hex(&hash) {
                        self.repair_message(user, h);
                    }
                    Err(WireError::new(
                        dem_proto::host::MESSAGE_UNAVAILABLE,
                        format!("message {hash} is unavailable on this host ({reason}); it is being repaired from another replica, read it there"),
                    ))
                }
                Err(e) => self.call_error(&id, e),
            }
        }
        .instrument(span)
        .await
    }

    async fn create(&self, order: &Signed<CreateOrder>) -> Result<HostResponse, WireError> {
        let order = verify::create_order(order, now_ms(), self.id).map_err(forbidden)?;
        let id = mailbox_id(&order.user)?;
        tracing::info!(mailbox = %order.user.short(), host = %self.id.short(), "creating mailbox");
        match self.mailboxes.create(&id, None).await {
            Ok(()) | Err(MailboxCallError::Exists(_)) => {}
            Err(e) => return Err(internal(e)),
        }
        self.keeper_state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .copied(&id);
        self.location_update(ObjectRef::Mailbox(order.user), Epoch(1))
            .await
            .map_err(|e| internal(format!("the dispatch unit did not record the mailbox: {e}")))?;
        // Place the other replicas now, so the mailbox is acknowledged as
        // registered only once it can take W-replicated writes.
        if let Err(e) = self.keep_one(order.user, 3_000).await {
            tracing::warn!(mailbox = %order.user.short(), error = %e.message, "placing replicas of a new mailbox; the keeper will retry");
        }
        Ok(HostResponse::Done)
    }

    /// Records a delivery's outcome and time in the metrics.
    fn count_delivery(
        &self,
        delivered: &Result<HostResponse, WireError>,
        started: std::time::Instant,
    ) {
        let outcome = match delivered {
            Ok(_) => "delivered",
            Err(e) if e.code == WireError::BUSY => "busy",
            Err(_) => "refused",
        };
        self.metrics
            .delivery(outcome, started.elapsed().as_secs_f64());
    }

    async fn deliver(&self, to: UserId, signed: &SignedMail) -> Result<HostResponse, WireError> {
        let id = mailbox_id(&to)?;
        let span = tracing::debug_span!("deliver", mailbox = %to.short(), host = %self.id.short());
        async {
            let sender = self.sender_key(&signed.sender_name).await?;
            // Hashing and parsing up to the stored limit is CPU work: off
            // the async workers.
            let owned = signed.clone();
            let mail = tokio::task::spawn_blocking(move || verify::sealed_mail(&owned, sender))
                .await
                .map_err(|e| internal(format!("checking a mail: {e}")))?
                .map_err(forbidden)?;
            self.file_delivery(to, &id, mail).await
        }
        .instrument(span)
        .await
    }

    /// Delivers a mail sealed end to end to its envelope's recipient. The
    /// host sees the envelope and the ciphertext only, so nothing here (nor
    /// in the span) comes from the message.
    async fn deliver_sealed(&self, mail: SealedMail) -> Result<HostResponse, WireError> {
        // Before anything else: an oversize ciphertext costs no lookup and
        // no hash.
        verify::sealed_size(&mail).map_err(forbidden)?;
        // The envelope names the mailbox. Its signature, checked in
        // `sealed_envelope`, binds the two, so a mail sealed for one
        // mailbox is never filed in another.
        let to = mail
            .recipient()
            .map_err(|e| forbidden(format!("refused: {e}")))?;
        let id = mailbox_id(&to)?;
        let span =
            tracing::debug_span!("deliver_sealed", mailbox = %to.short(), host = %self.id.short());
        async {
            let name = mail
                .sender_name()
                .map_err(|e| forbidden(format!("refused: {e}")))?;
            let sender = self.sender_key(name.as_str()).await?;
            // Hashing up to the ciphertext limit is CPU work: off the
            // async workers.
            let incoming = tokio::task::spawn_blocking(move || {
                verify::sealed_envelope(&mail, to, sender, now_ms())
            })
            .await
            .map_err(|e| internal(format!("checking a sealed mail: {e}")))?
            .map_err(forbidden)?;
            self.file_delivery(to, &id, incoming).await
        }
        .instrument(span)
        .await
    }

    /// The key a sender name is registered to, as dispatch answers.
    async fn sender_key(&self, name: &str) -> Result<UserId, WireError> {
        match self
            .session
            .dispatch(&DispatchRequest::LookupName { name: name.into() })
            .await
        {
            Ok(DispatchResponse::Mailbox(found)) => Ok(found.user),
            Ok(_) | Err(_) => Err(forbidden(format!(
                "refused as forged: the sender name {:?} is not registered",
                name.chars().take(64).collect::<String>()
            ))),
        }
    }

    /// Hands a checked mail to its mailbox and replicates the delivery.
    async fn file_delivery(
        &self,
        to: UserId,
        id: &MailboxId,
        mail: Incoming,
    ) -> Result<HostResponse, WireError> {
        match self.mailboxes.deliver_tracked(id, mail).await {
            Ok((d, op)) => {
                if let Some(op) = op {
                    self.replicate(to, op).await?;
                }
                Ok(HostResponse::Delivered(d))
            }
            Err(e) => self.call_error(id, e),
        }
    }

    async fn plugin_add(&self, upload: &Signed<PluginUpload>) -> Result<HostResponse, WireError> {
        let checked = {
            let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
            verify::plugin_upload(upload, now_ms(), &mut replay)
        }
        .map_err(forbidden)?;
        if checked.name.is_empty() || checked.name.len() > PLUGIN_NAME_BYTES_MAX {
            return Err(WireError::new(
                WireError::BAD_REQUEST,
                format!("a plugin name has 1 to {PLUGIN_NAME_BYTES_MAX} bytes"),
            ));
        }
        let id = mailbox_id(&checked.mailbox)?;
        match self
            .mailboxes
            .install_plugin(
                &id,
                &checked.name,
                &checked.code,
                &checked.config,
                checked.order,
            )
            .await
        {
            Ok(_) => Ok(HostResponse::Done),
            Err(e) => self.call_error(&id, e),
        }
    }

    /// Maps a mailbox failure to an answer: `Moved` is an answer, not an
    /// error, so the client can follow it.
    fn call_error(&self, id: &MailboxId, e: MailboxCallError) -> Result<HostResponse, WireError> {
        if let Some(to) = self.mailboxes.moved_to(id) {
            return Ok(HostResponse::Moved(to));
        }
        match e {
            MailboxCallError::Moved { to, .. } => Ok(HostResponse::Moved(to)),
            MailboxCallError::Unknown(_) => Err(WireError::new(
                NOT_HERE,
                "this host does not hold that mailbox",
            )),
            e @ (MailboxCallError::Refused(_) | MailboxCallError::Rejected { .. }) => {
                Err(WireError::new(WireError::BAD_REQUEST, e.to_string()))
            }
            e if e.is_busy() => Err(WireError::new(WireError::BUSY, e.to_string())),
            e => Err(internal(e)),
        }
    }
}

/// A request's kind, as `/metrics` labels it.
fn request_kind(req: &HostRequest) -> &'static str {
    match req {
        HostRequest::Owner(_) => "owner",
        HostRequest::Create(_) => "create",
        HostRequest::Deliver { .. } => "deliver",
        HostRequest::DeliverSealed { .. } => "deliver_sealed",
        HostRequest::PluginAdd(_) => "plugin_add",
        HostRequest::AttachmentPut { .. } => "attachment_put",
        HostRequest::AttachmentCopy { .. } => "attachment_copy",
        HostRequest::AttachmentGet { .. } => "attachment_get",
        HostRequest::Migrate { .. } => "migrate",
        HostRequest::MissingCode { .. } => "missing_code",
        HostRequest::Pull { .. } => "pull",
        HostRequest::Sync { .. } => "sync",
        HostRequest::HandBack { .. } => "hand_back",
        HostRequest::Copy { .. } => "copy",
        HostRequest::Replicas => "replicas",
        HostRequest::HeldBack => "held_back",
        HostRequest::Holds { .. } => "holds",
        HostRequest::MoveDelta(_) => "move_delta",
        HostRequest::Traffic => "traffic",
        HostRequest::CodeGet { .. } => "code_get",
        HostRequest::Describe { .. } => "describe",
        HostRequest::MessageGet { .. } => "message_get",
        HostRequest::MissingMessages { .. } => "missing_messages",
    }
}

/// Whether a request answers on its stream by itself (transfers).
fn streams_itself(req: &HostRequest) -> bool {
    matches!(
        req,
        HostRequest::AttachmentPut { .. }
            | HostRequest::AttachmentCopy { .. }
            | HostRequest::AttachmentGet { .. }
            | HostRequest::Migrate { .. }
            | HostRequest::Copy { .. }
            | HostRequest::MoveDelta(_)
    )
}

/// The mailbox id of a user: their key in hex.
pub(super) fn mailbox_id(user: &UserId) -> Result<MailboxId, WireError> {
    MailboxId::new(user.to_hex()).map_err(internal)
}

fn forbidden(e: impl std::fmt::Display) -> WireError {
    WireError::new(WireError::FORBIDDEN, e.to_string())
}

pub(super) fn internal(e: impl std::fmt::Display) -> WireError {
    WireError::new(WireError::INTERNAL, e.to_string())
}
