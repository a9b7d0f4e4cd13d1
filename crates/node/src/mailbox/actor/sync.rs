//! The replica side of the actor: applying ops made at other replicas and
//! telling a peer which ops it lacks (see `crate::replica`).
//!
//! A remote op is applied with the context it was made with, so the guest
//! computes the same result as at its origin, and is logged like a local
//! one — also when the guest refuses it (a concurrent change got there
//! first): the op is then part of this replica's history, so its version
//! vector may advance and it can forward the op to others.

use super::{E, MailboxActor, Reply};
use crate::mailbox::ImportRefusal;
use crate::mailbox::request::Op;
use crate::replica::{Fit, Since, VersionVector};

impl MailboxActor {
    pub(super) async fn handle_apply(
        &mut self,
        ops: Vec<Vec<u8>>,
        messages: Vec<Vec<u8>>,
        reply: Reply<VersionVector>,
    ) {
        if let Err(e) = self.wake().await {
            let _ = reply.send(Err(e));
            return;
        }
        // Each blob is keyed by its own hash: a peer cannot pass off other
        // bytes as the message an op names.
        let mut messages = Self::by_hash(messages);
        // The guest is told it is replaying for the whole batch, and told
        // again that it is not before anything else may call it, on every
        // path out of the loop: a new request must never skip its checks.
        let mut replaying = false;
        let mut failed = None;
        for bytes in ops {
            let mut op = match Op::decode(&bytes) {
                Ok(op) if op.seq > 0 => op,
                Ok(_) => {
                    failed = Some(E::Import(ImportRefusal::Refused(
                        "a replicated op has no sequence number".into(),
                    )));
                    break;
                }
                Err(e) => {
                    failed = Some(E::Import(ImportRefusal::MalformedOp(e)));
                    break;
                }
            };
            let op_id = op.id_after(&self.vv);
            match self.vv.fit(op_id) {
                Fit::Seen => continue,
                // The rest waits for the missing ops; the sender learns
                // from the vector where to resume.
                Fit::Gap => break,
                Fit::Next => {}
            }
            self.clock.observe(op.ctx.hlc);
            let Some(instance) = self.instance.as_mut() else {
                failed = Some(E::Gone(self.id.clone()));
                break;
            };
            let mut result = Ok(());
            if !replaying {
                result = instance.set_replaying(true).await;
                replaying = true;
            }
            let result = match result {
                Ok(()) => instance.call(Some(op.ctx), &mut op.request).await,
                Err(trap) => Err(trap),
            };
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(refusal)) => {
                    tracing::debug!(op = ?op_id, "replicated {} changed nothing: {refusal}", op.request.name());
                }
                Err(trap) => {
                    tracing::error!(op = ?op_id, "{trap}; dropping the instance");
                    self.drop_instance();
                    failed = Some(E::Trap(trap));
                    break;
                }
            }
            if matches!(
                op.request,
                super::Request::InstallPlugin { .. } | super::Request::RemovePlugin { .. }
            ) {
                self.plugins = None;
            }
            // The op's message goes into the same commit as the op. One the
            // sender did not have (a mail deleted since) and this host lacks
            // leaves the mail here without its bytes until it is fetched
            // from another replica; reads then say so.
            // A blob this host already holds (for another mailbox, or from
            // an earlier try) is read back, so the store records that this
            // mailbox names it too.
            let message = super::messages::message_of(&bytes).and_then(|h| {
                messages.remove(&h).or_else(|| {
                    let store = self.store.as_ref()?;
                    store.message(&h).ok().flatten()
                })
            });
            // Durability is awaited for the batch as a whole below.
            drop(self.append_logged(op_id, bytes, message));
        }
        if replaying
            && let Some(instance) = self.instance.as_mut()
            && let Err(trap) = instance.set_replaying(false).await
        {
            tracing::error!("{trap}; dropping the instance");
            self.drop_instance();
            failed.get_or_insert(E::Trap(trap));
        }
        if let Some(e) = failed {
            let _ = reply.send(Err(e));
            return;
        }
        self.maybe_snapshot().await;
        let vv = self.vv.clone();
        let target = self.applied_seq;
        let mut durable = self.durable.subscribe();
        if self.store.is_none() {
            let _ = reply.send(Ok(vv));
            return;
        }
        tokio::spawn(async move {
            let result = match durable.wait_for(|d| d.settled >= target).await {
                Ok(d) if !d.failed => Ok(vv),
                _ => Err(E::Commit(dem_store::CommitError::WriterGone)),
            };
            let _ = reply.send(result);
        });
    }

    /// The ops `peer` lacks within `budget_bytes`, with the message blobs
    /// their deliveries name; the blobs count against the budget too, but
    /// at least one op goes, so a large message still moves.
    pub(super) async fn handle_since(
        &mut self,
        peer: &VersionVector,
        budget_bytes: usize,
    ) -> Result<(Since, Vec<Vec<u8>>, VersionVector), E> {
        if !self.loaded && self.store.is_some() {
            self.wake().await?;
        }
        let since = match self.window.since(peer, &self.vv, budget_bytes) {
            Since::Ops { mut ops, mut more } => {
                let mut messages = Vec::new();
                let mut used = 0usize;
                let mut kept = 0usize;
                for op in &ops {
                    let mine = self.messages_for(std::slice::from_ref(op));
                    let bytes = op.len() + mine.iter().map(Vec::len).sum::<usize>();
                    if kept > 0 && used + bytes > budget_bytes {
                        more = true;
                        break;
                    }
                    used += bytes;
                    kept += 1;
                    messages.extend(mine);
                }
                ops.truncate(kept);
                return Ok((Since::Ops { ops, more }, messages, self.vv.clone()));
            }
            Since::Full => Since::Full,
        };
        Ok((since, Vec::new(), self.vv.clone()))
    }
}
