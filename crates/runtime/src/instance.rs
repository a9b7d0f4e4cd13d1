//! One live mailbox component: its Store and its typed exports.
//!
//! Every call gets a fresh fuel budget. Any error out of a call is a trap
//! (a guest bug, an endless loop, a memory bomb): the instance is then dead
//! and every further call would fail, so the caller must throw it away and
//! rebuild it from durable state. Expected failures are never traps: they
//! come back as the WIT `mailbox-error` inside `Ok`.

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::{self as w, Mailbox, SnapshotInfo};
use super::convert::{lend, list};
use super::guest_state::GuestState;
use super::guest_stats::GuestStats;
use dem_proto::mail::{MailRead, MailSummary, MailboxError, OpContext, SearchQuery};
use dem_proto::mailbox::{Request, Response};

/// Bytes moved per `snapshot-read` / `restore-write` call.
pub const SNAPSHOT_CHUNK_BYTES: u32 = 1 << 20;
/// Largest snapshot a mailbox may produce: what the store keeps (redb
/// refuses values over 3 GiB). A guest announcing more is refused before
/// the host allocates anything for it.
pub const SNAPSHOT_BYTES_MAX: u64 = 2 << 30;
/// Most bytes reserved up front for a snapshot; beyond it the buffer grows
/// as chunks actually arrive, so an announced size costs nothing until
/// the guest delivers it.
const SNAPSHOT_RESERVE_BYTES_MAX: u64 = 64 << 20;

/// A call that did not return normally.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (ran out of fuel or memory, hit `unreachable`,
    /// panicked). The instance is dead.
    #[error("mailbox code trapped in `{call}`: {reason}")]
    Trap { call: &'static str, reason: String },
    /// A mutation was called without the context the host must supply.
    #[error("`{0}` is a mutation and needs an operation context")]
    MissingContext(&'static str),
    /// The guest produced a snapshot whose length disagrees with what it
    /// announced.
    #[error("snapshot length mismatch: announced {announced} bytes, read {read}")]
    SnapshotLength { announced: u64, read: u64 },
    /// The guest announced a snapshot over [`SNAPSHOT_BYTES_MAX`], or a
    /// chunk over what was asked: refused, nothing allocated for it.
    #[error("the mailbox's snapshot is too large: {what} {bytes} bytes, the limit is {max}")]
    SnapshotTooLarge {
        what: &'static str,
        bytes: u64,
        max: u64,
    },
    /// The guest's `state-digest` was not the 32 bytes of a BLAKE3 hash.
    #[error("state digest has {0} bytes, not 32")]
    DigestLength(usize),
}

/// A live mailbox component.
pub struct MailboxInstance {
    store: Store<GuestState>,
    guest: Mailbox,
    fuel_per_call: u64,
    /// The pool slot this instance occupies; freed when it is dropped.
    _slot: crate::Slot,
    /// Where its traps and burned fuel are counted.
    stats: Arc<GuestStats>,
}

impl MailboxInstance {
    pub(crate) fn new(
        store: Store<GuestState>,
        guest: Mailbox,
        fuel_per_call: u64,
        slot: crate::Slot,
        stats: Arc<GuestStats>,
    ) -> Self {
        Self {
            store,
            guest,
            fuel_per_call,
            _slot: slot,
            stats,
        }
    }

    fn refuel(&mut self) {
        self.stats.refuel(&mut self.store, self.fuel_per_call);
    }

    /// Counts what a call burned, and its trap if it trapped, as it ends.
    fn settle<T>(&mut self, out: Result<T, CallError>) -> Result<T, CallError> {
        self.refuel();
        if matches!(out, Err(CallError::Trap { .. })) {
            self.stats.trapped();
        }
        out
    }

    /// Runs one request. `ctx` must be given for mutations.
    ///
    /// The request's records are moved into the generated types for the
    /// call and moved back after it, so not even a delivery's body is
    /// copied; `request` is as it was when this returns (a call whose
    /// future is dropped halfway may leave them empty).
    pub async fn call(
        &mut self,
        ctx: Option<OpContext>,
        request: &mut Request,
    ) -> Result<Result<Response, MailboxError>, CallError> {
        let out = self.call_guest(ctx, request).await;
        self.settle(out)
    }

    async fn call_guest(
        &mut self,
        ctx: Option<OpContext>,
        request: &mut Request,
    ) -> Result<Result<Response, MailboxError>, CallError> {
        let name = request.name();
        let need_ctx = || {
            ctx.map(w::OpContext::from)
                .ok_or(CallError::MissingContext(name))
        };
        self.refuel();
        let api = self.guest.dem_mail_api();
        let s = &mut self.store;
        let trap = |e: wasmtime::Error| CallError::Trap {
            call: name,
            reason: format!("{e:#}"),
        };
        use Request as R;
        use Response as P;
        let out = match request {
            R::Deliver { mail, place } => {
                let ctx = need_ctx()?;
                let (wit_mail, wit_place) = (lend(mail), lend(place));
                let out = api.call_deliver(s, ctx, &wit_mail, &wit_place).await;
                (*mail, *place) = (wit_mail.into(), wit_place.into());
                out.map_err(trap)?.map(|d| P::Delivered(d.into()))
            }
            R::ListFolder {
                folder,
                offset,
                limit,
            } => api
                .call_list_folder(s, folder, *offset, *limit)
                .await
                .map_err(trap)?
                .map(|p| P::Page(p.into())),
            // The stored bytes are the host's to read (`parts` asks for
            // them): the guest holds only where they are.
            R::Get { id, parts: _ } => api.call_get(s, id).await.map_err(trap)?.map(|d| {
                P::Detail(Box::new(MailRead {
                    detail: d.into(),
                    bytes: None,
                }))
            }),
            R::SetFlags { id, add, remove } => {
                let ctx = need_ctx()?;
                let (wit_add, wit_remove) = (lend(add), lend(remove));
                let out = api.call_set_flags(s, ctx, id, &wit_add, &wit_remove).await;
                (*add, *remove) = (wit_add.into(), wit_remove.into());
                out.map_err(trap)?.map(|f| P::Flags(f.into()))
            }
            R::MoveMail { id, folder } => api
                .call_move_mail(s, need_ctx()?, id, folder)
                .await
                .map_err(trap)?
                .map(P::Uid),
            R::DeleteMail { id } => api
                .call_delete_mail(s, need_ctx()?, id)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::DeleteHistory { offset, limit } => Ok(P::Tombstones(list(
                api.call_delete_history(s, *offset, *limit)
                    .await
                    .map_err(trap)?,
            ))),
            R::Search { query, limit } => {
                let wit_query = lend(query);
                let out = api.call_search(s, &wit_query, 0, *limit).await;
                *query = wit_query.into();
                out.map_err(trap)?.map(|found| P::Summaries(list(found)))
            }
            R::CreateFolder { name } => api
                .call_create_folder(s, need_ctx()?, name)
                .await
                .map_err(trap)?
                .map(|f| P::Folder(f.into())),
            R::RenameFolder { name, new_name } => api
                .call_rename_folder(s, need_ctx()?, name, new_name)
                .await
                .map_err(trap)?
                .map(|f| P::Folder(f.into())),
            R::DeleteFolder { name } => api
                .call_delete_folder(s, need_ctx()?, name)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListFolders => Ok(P::Folders(list(
                api.call_list_folders(s).await.map_err(trap)?,
            ))),
            R::AddContact { contact } => {
                let ctx = need_ctx()?;
                let wit_contact = lend(contact);
                let out = api.call_add_contact(s, ctx, &wit_contact).await;
                *contact = wit_contact.into();
                out.map_err(trap)?.map(|()| P::Done)
            }
            R::RemoveContact { address } => api
                .call_remove_contact(s, need_ctx()?, address)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListContacts => Ok(P::Contacts(list(
                api.call_list_contacts(s).await.map_err(trap)?,
            ))),
            R::AddSender { which, pattern } => api
                .call_add_sender(s, need_ctx()?, (*which).into(), pattern)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::RemoveSender { which, pattern } => api
                .call_remove_sender(s, need_ctx()?, (*which).into(), pattern)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListSenders { which } => Ok(P::Senders(
                api.call_list_senders(s, (*which).into())
                    .await
                    .map_err(trap)?,
            )),
            R::ClassifySender { address } => Ok(P::SenderStatus(
                api.call_classify_sender(s, address)
                    .await
                    .map_err(trap)?
                    .into(),
            )),
            R::SetPreference { key, value } => api
                .call_set_preference(s, need_ctx()?, key, value)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::RemovePreference { key } => api
                .call_remove_preference(s, need_ctx()?, key)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::GetPreference { key } => Ok(P::Preference(
                api.call_get_preference(s, key).await.map_err(trap)?,
            )),
            R::ListPreferences => Ok(P::Preferences(
                api.call_list_preferences(s).await.map_err(trap)?,
            )),
            R::InstallPlugin { entry } => {
                let ctx = need_ctx()?;
                let wit_entry = lend(entry);
                let out = api.call_install_plugin(s, ctx, &wit_entry).await;
                *entry = wit_entry.into();
                out.map_err(trap)?.map(|()| P::Done)
            }
            R::RemovePlugin { name } => api
                .call_remove_plugin(s, need_ctx()?, name)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListPlugins => Ok(P::Plugins(list(
                api.call_list_plugins(s).await.map_err(trap)?,
            ))),
            R::Stats => Ok(P::Stats(api.call_stats(s).await.map_err(trap)?.into())),
        };
        Ok(out.map_err(MailboxError::from))
    }

    /// Serialises the state and streams it out in chunks, so the guest never
    /// has to build a second whole copy in a single return value.
    pub async fn snapshot(&mut self) -> Result<(u32, Vec<u8>), CallError> {
        let out = self.snapshot_guest().await;
        self.settle(out)
    }

    async fn snapshot_guest(&mut self) -> Result<(u32, Vec<u8>), CallError> {
        let trap = |call: &'static str| {
            move |e: wasmtime::Error| CallError::Trap {
                call,
                reason: format!("{e:#}"),
            }
        };
        let fuel = self.fuel_per_call;
        self.stats.refuel(&mut self.store, fuel);
        let api = self.guest.dem_mail_api();
        let SnapshotInfo {
            schema_version,
            size_bytes,
        } = api
            .call_snapshot_begin(&mut self.store)
            .await
            .map_err(trap("snapshot-begin"))?;
        if size_bytes > SNAPSHOT_BYTES_MAX {
            let _ = api.call_snapshot_end(&mut self.store).await;
            return Err(CallError::SnapshotTooLarge {
                what: "announced",
                bytes: size_bytes,
                max: SNAPSHOT_BYTES_MAX,
            });
        }
        let reserve = size_bytes.min(SNAPSHOT_RESERVE_BYTES_MAX);
        let mut out = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
        while (out.len() as u64) < size_bytes {
            self.stats.refuel(&mut self.store, fuel);
            let chunk = api
                .call_snapshot_read(&mut self.store, out.len() as u64, SNAPSHOT_CHUNK_BYTES)
                .await
                .map_err(trap("snapshot-read"))?;
            if chunk.is_empty() {
                break;
            }
            let left = size_bytes - out.len() as u64;
            if chunk.len() as u64 > u64::from(SNAPSHOT_CHUNK_BYTES).min(left) {
                let _ = api.call_snapshot_end(&mut self.store).await;
                return Err(CallError::SnapshotTooLarge {
                    what: "a chunk of",
                    bytes: chunk.len() as u64,
                    max: u64::from(SNAPSHOT_CHUNK_BYTES).min(left),
                });
            }
            out.extend_from_slice(&chunk);
        }
        self.stats.refuel(&mut self.store, fuel);
        api.call_snapshot_end(&mut self.store)
            .await
            .map_err(trap("snapshot-end"))?;
        if out.len() as u64 != size_bytes {
            return Err(CallError::SnapshotLength {
                announced: size_bytes,
                read: out.len() as u64,
            });
        }
        Ok((schema_version, out))
    }

    /// BLAKE3 of the replicated content of the state: equal on replicas
    /// that applied the same operations, in whatever causal order (UIDs
    /// and other arrival-order numbering are left out).
    /// Tells the guest whether the calls that follow replay ops accepted
    /// at their origin (another replica's, or this host's log), which it
    /// then applies by its merge rules instead of checking them against
    /// the state as a new request.
    pub async fn set_replaying(&mut self, on: bool) -> Result<(), CallError> {
        let out = self.set_replaying_guest(on).await;
        self.settle(out)
    }

    async fn set_replaying_guest(&mut self, on: bool) -> Result<(), CallError> {
        self.refuel();
        self.guest
            .dem_mail_api()
            .call_set_replaying(&mut self.store, on)
            .await
            .map_err(|e| CallError::Trap {
                call: "set-replaying",
                reason: format!("{e:#}"),
            })
    }

    /// One page of the mails the query's envelope fields select, newest
    /// first: the guest ignores body and text terms, which the host looks
    /// up in its full-text index (then calls `search_among`).
    pub async fn search_page(
        &mut self,
        query: &mut SearchQuery,
        offset: u32,
        limit: u32,
    ) -> Result<Result<Vec<MailSummary>, MailboxError>, CallError> {
        self.refuel();
        let wit_query = lend(query);
        let out = self
            .guest
            .dem_mail_api()
            .call_search(&mut self.store, &wit_query, offset, limit)
            .await;
        *query = wit_query.into();
        let out = out
            .map(|r| r.map(list).map_err(MailboxError::from))
            .map_err(|e| CallError::Trap {
                call: "search",
                reason: format!("{e:#}"),
            });
        self.settle(out)
    }

    /// As [`MailboxInstance::search_page`], among the mails naming one of
    /// `messages` (32-byte BLAKE3 hashes concatenated, ascending, at most
    /// 65536): what the host's full-text index found for the query's body
    /// and text terms.
    pub async fn search_among(
        &mut self,
        query: &mut SearchQuery,
        messages: &[u8],
        offset: u32,
        limit: u32,
    ) -> Result<Result<Vec<MailSummary>, MailboxError>, CallError> {
        self.refuel();
        let wit_query = lend(query);
        let out = self
            .guest
            .dem_mail_api()
            .call_search_among(&mut self.store, &wit_query, messages, offset, limit)
            .await;
        *query = wit_query.into();
        let out = out
            .map(|r| r.map(list).map_err(MailboxError::from))
            .map_err(|e| CallError::Trap {
                call: "search-among",
                reason: format!("{e:#}"),
            });
        self.settle(out)
    }

    /// A page of the blob hashes of the mails the mailbox holds, ascending.
    pub async fn message_refs(
        &mut self,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<String>, CallError> {
        self.refuel();
        let out = self
            .guest
            .dem_mail_api()
            .call_message_refs(&mut self.store, offset, limit)
            .await
            .map_err(|e| CallError::Trap {
                call: "message-refs",
                reason: format!("{e:#}"),
            });
        self.settle(out)
    }

    /// Messages the guest wrote while converting an old snapshot, at most
    /// `max`, each handed out once.
    pub async fn take_converted(&mut self, max: u32) -> Result<Vec<Vec<u8>>, CallError> {
        self.refuel();
        let out = self
            .guest
            .dem_mail_api()
            .call_take_converted(&mut self.store, max)
            .await
            .map_err(|e| CallError::Trap {
                call: "take-converted",
                reason: format!("{e:#}"),
            });
        self.settle(out)
    }

    pub async fn state_digest(&mut self) -> Result<[u8; 32], CallError> {
        let out = self.state_digest_guest().await;
        self.settle(out)
    }

    async fn state_digest_guest(&mut self) -> Result<[u8; 32], CallError> {
        self.refuel();
        let bytes = self
            .guest
            .dem_mail_api()
            .call_state_digest(&mut self.store)
            .await
            .map_err(|e| CallError::Trap {
                call: "state-digest",
                reason: format!("{e:#}"),
            })?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| CallError::DigestLength(bytes.len()))
    }

    /// Replaces the state with a snapshot, streamed in in chunks.
    pub async fn restore(
        &mut self,
        schema_version: u32,
        bytes: &[u8],
    ) -> Result<Result<(), MailboxError>, CallError> {
        let out = self.restore_guest(schema_version, bytes).await;
        self.settle(out)
    }

    async fn restore_guest(
        &mut self,
        schema_version: u32,
        bytes: &[u8],
    ) -> Result<Result<(), MailboxError>, CallError> {
        let trap = |call: &'static str| {
            move |e: wasmtime::Error| CallError::Trap {
                call,
                reason: format!("{e:#}"),
            }
        };
        let fuel = self.fuel_per_call;
        let api = self.guest.dem_mail_api();
        self.stats.refuel(&mut self.store, fuel);
        if let Err(e) = api
            .call_restore_begin(&mut self.store, schema_version, bytes.len() as u64)
            .await
            .map_err(trap("restore-begin"))?
        {
            return Ok(Err(e.into()));
        }
        for chunk in bytes.chunks(SNAPSHOT_CHUNK_BYTES as usize) {
            self.stats.refuel(&mut self.store, fuel);
            if let Err(e) = api
                .call_restore_write(&mut self.store, chunk)
                .await
                .map_err(trap("restore-write"))?
            {
                return Ok(Err(e.into()));
            }
        }
        self.stats.refuel(&mut self.store, fuel);
        Ok(api
            .call_restore_finish(&mut self.store)
            .await
            .map_err(trap("restore-finish"))?
            .map_err(MailboxError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Runtime, RuntimeConfig};
    use dem_builtin as builtin;
    use dem_proto::mail::{
        BlobRef, Contact, FlagState, MailFlags, NewMail, Placement, PluginEntry, SearchQuery,
    };

    fn context(hlc: u64) -> Option<OpContext> {
        Some(OpContext {
            now_ms: 1_700_000_000_000,
            hlc,
            replica: 1,
        })
    }

    /// The actor logs the request after the call, so what was lent to the
    /// guest must come back whole, whether the call succeeds, is refused or
    /// never starts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_gives_its_request_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
        let code = runtime.code().insert(builtin::MAILBOX).unwrap();
        let mut instance = runtime
            .instantiate_mailbox(&code, "lend".into())
            .await
            .unwrap();
        let flags = |f: MailFlags| FlagState {
            flags: f,
            keywords: vec!["k".into()],
        };
        let requests = [
            Request::Deliver {
                mail: NewMail {
                    id: "m1".into(),
                    from: "a@x.org".into(),
                    to: vec!["b@y.org".into()],
                    subject: "s".into(),
                    message_id: "<1@x.org>".into(),
                    in_reply_to: Some("<0@x.org>".into()),
                    references: vec!["<0@x.org>".into()],
                    message: BlobRef::of(b"From: a@x.org\r\n\r\nbody"),
                    size_bytes: 19,
                    ..NewMail::default()
                },
                place: Placement {
                    folder: "INBOX".into(),
                    flags: MailFlags::SEEN,
                    keywords: vec!["k".into()],
                    spam_score: Some(0.5),
                },
            },
            Request::SetFlags {
                id: "m1".into(),
                add: flags(MailFlags::FLAGGED),
                remove: flags(MailFlags::SEEN),
            },
            // Refused: no such mail.
            Request::SetFlags {
                id: "nope".into(),
                add: flags(MailFlags::DRAFT),
                remove: flags(MailFlags::empty()),
            },
            Request::Search {
                query: SearchQuery {
                    subject: Some("s".into()),
                    flags_set: MailFlags::FLAGGED,
                    ..SearchQuery::default()
                },
                limit: 10,
            },
            Request::AddContact {
                contact: Contact {
                    name: "A".into(),
                    address: "a@x.org".into(),
                    note: "n".into(),
                },
            },
            Request::InstallPlugin {
                entry: PluginEntry {
                    name: "p".into(),
                    code_hash: "00".repeat(32),
                    config: "c".into(),
                    order: 1,
                },
            },
        ];
        for (i, request) in requests.into_iter().enumerate() {
            let mut lent = request.clone();
            let ctx = lent.is_mutation().then(|| context(i as u64 + 1)).flatten();
            let answer = instance.call(ctx, &mut lent).await.unwrap();
            assert_eq!(lent, request, "{answer:?}");
            if i == 2 {
                assert!(
                    matches!(answer, Err(MailboxError::NotFound(_))),
                    "{answer:?}"
                );
            } else {
                assert!(answer.is_ok(), "{}: {answer:?}", request.name());
            }
        }
        let mut without_ctx = Request::AddContact {
            contact: Contact::default(),
        };
        assert!(matches!(
            instance.call(None, &mut without_ctx).await,
            Err(CallError::MissingContext("add-contact"))
        ));
    }

    /// Each call's burned fuel is counted as it ends, and a call that runs
    /// out of fuel counts as a trap: what `dem_guest_*` show.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_count_their_fuel_and_traps() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(dir.path(), RuntimeConfig::default()).unwrap();
        let code = runtime.code().insert(builtin::MAILBOX).unwrap();
        let mut instance = runtime
            .instantiate_mailbox(&code, "fuel".into())
            .await
            .unwrap();
        let before = runtime.guest_stats().fuel_used();
        instance
            .call(None, &mut Request::Stats)
            .await
            .unwrap()
            .unwrap();
        let after = runtime.guest_stats().fuel_used();
        assert!(after > before, "{before} then {after}");
        assert_eq!(runtime.guest_stats().traps(), 0);

        let starved = Runtime::new(
            dir.path(),
            RuntimeConfig {
                mailbox_fuel_per_call: 10,
                ..RuntimeConfig::default()
            },
        )
        .unwrap();
        // Ten instructions end it, at its start or at its first call.
        if let Ok(mut instance) = starved.instantiate_mailbox(&code, "starved".into()).await {
            let out = instance.call(None, &mut Request::Stats).await;
            assert!(matches!(out, Err(CallError::Trap { .. })), "{out:?}");
        }
        assert_eq!(starved.guest_stats().traps(), 1);
    }
}
