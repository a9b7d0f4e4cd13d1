//! Plugin code follows the ops that install it.
//!
//! An `InstallPlugin` op names its filter by BLAKE3 hash only; the code
//! reached the host the owner called (`PluginAdd`). A replica applying the
//! op from a peer must hold the same code, or it would deliver mail without
//! that filter. So before applying a `Sync`, the receiver fetches every
//! installed plugin it lacks from the peer that sent the ops (`CodeGet`),
//! which must hold it: it applied the op itself. The hash is checked on
//! arrival, and the component type-checked as a filter, like an upload.
//! Whole copies (`Copy`, moves) already carry missing code with the state.

use serde_bytes::ByteBuf;

use super::Node;
use super::serve::internal;
use crate::mailbox::{Op, Request};
use dem_client::SessionError;
use dem_identity::{HostId, UserId};
use dem_net::WireError;
use dem_proto::ids::CodeHash;
use dem_proto::{HostRequest, HostResponse};
use dem_runtime::RuntimeError;
use dem_runtime::code_store::CodeError;

/// The largest component `CodeGet` answers with: it travels in one frame,
/// as a plugin upload does.
pub const CODE_GET_BYTES_MAX: usize = dem_net::frame::FRAME_BYTES_MAX - (64 << 10);
/// Most distinct plugins one `Sync` may make this host fetch.
const FETCHES_PER_SYNC_MAX: usize = 16;

/// Why a plugin's code could not be fetched from a replica
/// ([`Node::fetch_code`]); the filter runs once the code arrives later.
#[derive(Debug, thiserror::Error)]
enum FetchCodeError {
    /// The `CodeGet` failed or the peer refused it.
    #[error(transparent)]
    Request(#[from] SessionError),
    /// The peer answered something else than code.
    #[error("answered {0:?}")]
    Unexpected(Box<HostResponse>),
    /// The bytes do not hash to the installed plugin's hash, or could not
    /// be stored.
    #[error(transparent)]
    Store(#[from] CodeError),
    /// The component is not a filter; it was removed again.
    #[error("not a filter component: {0}")]
    NotAFilter(#[source] RuntimeError),
}

impl Node {
    /// `CodeGet`: a component this host holds, for a replica that lacks it.
    pub(super) fn code_get(&self, hash: &CodeHash) -> Result<HostResponse, WireError> {
        let code = self.mailboxes.runtime().code();
        if !code.contains(hash) {
            return Err(WireError::new(
                dem_proto::host::NOT_HERE,
                "this host does not hold that code",
            ));
        }
        let bytes = code.bytes(hash).map_err(internal)?;
        if bytes.len() > CODE_GET_BYTES_MAX {
            return Err(WireError::new(
                WireError::TOO_LARGE,
                format!(
                    "{} bytes of code, at most {CODE_GET_BYTES_MAX}",
                    bytes.len()
                ),
            ));
        }
        Ok(HostResponse::Code(ByteBuf::from(bytes)))
    }

    /// Fetches from `from` the code of every plugin `ops` install that this
    /// host lacks. A failure is logged, not returned: the mail still
    /// replicates, and the filter runs once the code arrives with a later
    /// op or a whole copy.
    pub(super) async fn fetch_plugin_code(&self, user: UserId, ops: &[ByteBuf], from: HostId) {
        let missing = missing_plugin_code(ops, |h| self.mailboxes.runtime().code().contains(h));
        if missing.is_empty() {
            return;
        }
        let listed = self.listing(user, false).await.ok().and_then(|l| {
            l.members
                .into_iter()
                .find(|m| m.host == from)
                .and_then(|m| m.addr)
        });
        let addr = match listed {
            Some(addr) => addr,
            None => {
                tracing::warn!(mailbox = %user.short(), host = %self.id.short(), peer = %from.short(), "no address for the peer; plugin code not fetched");
                return;
            }
        };
        self.fetch_code_each(user, missing, from, &addr).await;
    }

    /// [`Self::fetch_plugin_code`] from a peer at a known `addr` (an
    /// unlisted host handing back ops, which the listing has no address
    /// for).
    pub(super) async fn fetch_plugin_code_at(
        &self,
        user: UserId,
        ops: &[ByteBuf],
        from: HostId,
        addr: &str,
    ) {
        let missing = missing_plugin_code(ops, |h| self.mailboxes.runtime().code().contains(h));
        self.fetch_code_each(user, missing, from, addr).await;
    }

    async fn fetch_code_each(
        &self,
        user: UserId,
        missing: Vec<dem_proto::ids::CodeHash>,
        from: HostId,
        addr: &str,
    ) {
        for hash in missing {
            if let Err(e) = self.fetch_code(addr, from, &hash).await {
                tracing::warn!(mailbox = %user.short(), host = %self.id.short(), peer = %from.short(), code = %hash.to_hex(), "plugin code not fetched: {e}");
            }
        }
    }

    async fn fetch_code(
        &self,
        addr: &str,
        from: HostId,
        hash: &CodeHash,
    ) -> Result<(), FetchCodeError> {
        let req = HostRequest::CodeGet { hash: *hash };
        let bytes = match self.session.host_request(addr, from, &req).await? {
            HostResponse::Code(bytes) => bytes.into_vec(),
            other => return Err(FetchCodeError::Unexpected(Box::new(other))),
        };
        let code = self.mailboxes.runtime().code();
        code.insert_expecting(hash, &bytes)?;
        if let Err(e) = self.mailboxes.runtime().check_filter(hash) {
            code.remove(hash);
            return Err(FetchCodeError::NotAFilter(e));
        }
        tracing::info!(host = %self.id.short(), code = %hash.to_hex(), "fetched plugin code from a replica");
        Ok(())
    }
}

/// The distinct plugin code hashes `ops` install that `have` says are
/// missing, at most [`FETCHES_PER_SYNC_MAX`]. Undecodable ops and bad
/// hashes are skipped here; applying the ops reports them.
fn missing_plugin_code(ops: &[ByteBuf], have: impl Fn(&CodeHash) -> bool) -> Vec<CodeHash> {
    let mut missing: Vec<CodeHash> = Vec::new();
    for op in ops {
        let Ok(op) = Op::decode(op) else { continue };
        let Request::InstallPlugin { entry } = op.request else {
            continue;
        };
        let Ok(hash) = entry.code_hash.parse::<CodeHash>() else {
            continue;
        };
        if !have(&hash) && !missing.contains(&hash) {
            missing.push(hash);
            if missing.len() == FETCHES_PER_SYNC_MAX {
                break;
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use dem_proto::mail::{OpContext, PluginEntry};

    fn install(hash: &CodeHash) -> ByteBuf {
        let op = Op {
            ctx: OpContext {
                now_ms: 1,
                hlc: 1,
                replica: 1,
            },
            request: Request::InstallPlugin {
                entry: PluginEntry {
                    name: "f".into(),
                    code_hash: hash.to_hex(),
                    config: String::new(),
                    order: 0,
                },
            },
            seq: 1,
        };
        ByteBuf::from(op.encode())
    }

    #[test]
    fn only_missing_installed_code_is_fetched_once() {
        let a = CodeHash([1; 32]);
        let b = CodeHash([2; 32]);
        let ops = vec![
            install(&a),
            install(&b),
            install(&a),
            ByteBuf::from(vec![0xc1]),
        ];
        let missing = missing_plugin_code(&ops, |h| *h == b);
        assert_eq!(missing, vec![a]);
    }

    #[test]
    fn fetches_per_sync_are_bounded() {
        let ops: Vec<ByteBuf> = (0..40u8).map(|i| install(&CodeHash([i; 32]))).collect();
        assert_eq!(
            missing_plugin_code(&ops, |_| false).len(),
            FETCHES_PER_SYNC_MAX
        );
    }
}
