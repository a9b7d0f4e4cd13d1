//! One live mailbox component: its Store and its typed exports.
//!
//! Every call gets a fresh fuel budget. Any error out of a call is a trap
//! (a guest bug, an endless loop, a memory bomb): the instance is then dead
//! and every further call would fail, so the caller must throw it away and
//! rebuild it from durable state. Expected failures are never traps: they
//! come back as the WIT `mailbox-error` inside `Ok`.

use wasmtime::Store;

use super::bindings::{Mailbox, MailboxError, OpContext, SnapshotInfo};
use super::guest_state::GuestState;
use crate::mailbox::request::{Request, Response};

/// Bytes moved per `snapshot-read` / `restore-write` call.
pub const SNAPSHOT_CHUNK_BYTES: u32 = 1 << 20;

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
    /// The guest's `state-digest` was not the 32 bytes of a BLAKE3 hash.
    #[error("state digest has {0} bytes, not 32")]
    DigestLength(usize),
}

/// A live mailbox component.
pub struct MailboxInstance {
    store: Store<GuestState>,
    guest: Mailbox,
    fuel_per_call: u64,
}

impl MailboxInstance {
    pub(crate) fn new(store: Store<GuestState>, guest: Mailbox, fuel_per_call: u64) -> Self {
        Self {
            store,
            guest,
            fuel_per_call,
        }
    }

    fn refuel(&mut self) {
        // Only fails when fuel metering is off, which the engine never is.
        let _ = self.store.set_fuel(self.fuel_per_call);
    }

    /// Runs one request. `ctx` must be given for mutations.
    pub async fn call(
        &mut self,
        ctx: Option<OpContext>,
        request: &Request,
    ) -> Result<Result<Response, MailboxError>, CallError> {
        let name = request.name();
        let need_ctx = || ctx.ok_or(CallError::MissingContext(name));
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
            R::Deliver { mail, place } => api
                .call_deliver(s, need_ctx()?, mail, place)
                .await
                .map_err(trap)?
                .map(P::Delivered),
            R::ListFolder {
                folder,
                offset,
                limit,
            } => api
                .call_list_folder(s, folder, *offset, *limit)
                .await
                .map_err(trap)?
                .map(P::Page),
            R::Get { id, parts } => api
                .call_get(s, id, *parts)
                .await
                .map_err(trap)?
                .map(|d| P::Detail(Box::new(d))),
            R::SetFlags { id, add, remove } => api
                .call_set_flags(s, need_ctx()?, id, add, remove)
                .await
                .map_err(trap)?
                .map(P::Flags),
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
            R::DeleteHistory { offset, limit } => Ok(P::Tombstones(
                api.call_delete_history(s, *offset, *limit)
                    .await
                    .map_err(trap)?,
            )),
            R::Search { query, limit } => api
                .call_search(s, query, *limit)
                .await
                .map_err(trap)?
                .map(P::Summaries),
            R::CreateFolder { name } => api
                .call_create_folder(s, need_ctx()?, name)
                .await
                .map_err(trap)?
                .map(P::Folder),
            R::RenameFolder { name, new_name } => api
                .call_rename_folder(s, need_ctx()?, name, new_name)
                .await
                .map_err(trap)?
                .map(P::Folder),
            R::DeleteFolder { name } => api
                .call_delete_folder(s, need_ctx()?, name)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListFolders => Ok(P::Folders(api.call_list_folders(s).await.map_err(trap)?)),
            R::AddContact { contact } => api
                .call_add_contact(s, need_ctx()?, contact)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::RemoveContact { address } => api
                .call_remove_contact(s, need_ctx()?, address)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListContacts => Ok(P::Contacts(api.call_list_contacts(s).await.map_err(trap)?)),
            R::AddSender { which, pattern } => api
                .call_add_sender(s, need_ctx()?, *which, pattern)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::RemoveSender { which, pattern } => api
                .call_remove_sender(s, need_ctx()?, *which, pattern)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListSenders { which } => Ok(P::Senders(
                api.call_list_senders(s, *which).await.map_err(trap)?,
            )),
            R::ClassifySender { address } => Ok(P::SenderStatus(
                api.call_classify_sender(s, address).await.map_err(trap)?,
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
            R::InstallPlugin { entry } => api
                .call_install_plugin(s, need_ctx()?, entry)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::RemovePlugin { name } => api
                .call_remove_plugin(s, need_ctx()?, name)
                .await
                .map_err(trap)?
                .map(|()| P::Done),
            R::ListPlugins => Ok(P::Plugins(api.call_list_plugins(s).await.map_err(trap)?)),
            R::Stats => Ok(P::Stats(api.call_stats(s).await.map_err(trap)?)),
        };
        Ok(out)
    }

    /// Serialises the state and streams it out in chunks, so the guest never
    /// has to build a second whole copy in a single return value.
    pub async fn snapshot(&mut self) -> Result<(u32, Vec<u8>), CallError> {
        let trap = |call: &'static str| {
            move |e: wasmtime::Error| CallError::Trap {
                call,
                reason: format!("{e:#}"),
            }
        };
        let fuel = self.fuel_per_call;
        let _ = self.store.set_fuel(fuel);
        let api = self.guest.dem_mail_api();
        let SnapshotInfo {
            schema_version,
            size_bytes,
        } = api
            .call_snapshot_begin(&mut self.store)
            .await
            .map_err(trap("snapshot-begin"))?;
        let mut out = Vec::with_capacity(usize::try_from(size_bytes).unwrap_or(0));
        while (out.len() as u64) < size_bytes {
            let _ = self.store.set_fuel(fuel);
            let chunk = api
                .call_snapshot_read(&mut self.store, out.len() as u64, SNAPSHOT_CHUNK_BYTES)
                .await
                .map_err(trap("snapshot-read"))?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        let _ = self.store.set_fuel(fuel);
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

    pub async fn state_digest(&mut self) -> Result<[u8; 32], CallError> {
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
        let trap = |call: &'static str| {
            move |e: wasmtime::Error| CallError::Trap {
                call,
                reason: format!("{e:#}"),
            }
        };
        let fuel = self.fuel_per_call;
        let api = self.guest.dem_mail_api();
        let _ = self.store.set_fuel(fuel);
        if let Err(e) = api
            .call_restore_begin(&mut self.store, schema_version, bytes.len() as u64)
            .await
            .map_err(trap("restore-begin"))?
        {
            return Ok(Err(e));
        }
        for chunk in bytes.chunks(SNAPSHOT_CHUNK_BYTES as usize) {
            let _ = self.store.set_fuel(fuel);
            if let Err(e) = api
                .call_restore_write(&mut self.store, chunk)
                .await
                .map_err(trap("restore-write"))?
            {
                return Ok(Err(e));
            }
        }
        let _ = self.store.set_fuel(fuel);
        api.call_restore_finish(&mut self.store)
            .await
            .map_err(trap("restore-finish"))
    }
}
