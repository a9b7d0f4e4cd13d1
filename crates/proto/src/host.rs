//! Messages served by hosts.
//!
//! A user's own calls are signed (`OwnerCall`), so only the owner can list,
//! read, change or configure a mailbox. Anyone may deliver, but the mail is
//! sealed by its sender. Hosts move mailboxes and attachments between them
//! with `Migrate` and `AttachmentPut`, streaming the export frames or the
//! chunks after the request on the same stream.

use serde::{Deserialize, Serialize};

use dem_identity::envelope::ENVELOPE_BODY_BYTES_MAX;
use dem_identity::{
    AttachmentRef as SealedRef, DomainTag, Epoch, HostId, KeyPair, MailContent, MailSeal,
    SealedMail, Signed, UserId, mail_id,
};

pub use crate::dispatch::MoveOrder;
use crate::export::ExportHeader;
use crate::mail::{AttachmentRef, Delivered};
use crate::mailbox::{MovedTo, Request, Response};
use crate::{AttachmentId, VersionVector};

/// A signed call on a mailbox: the mailbox is named inside the signed body
/// so a signature for one mailbox cannot be replayed at another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerCall {
    pub mailbox: UserId,
    pub request: Request,
}

/// The owner asks a host to create their (new) mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrder {
    pub user: UserId,
    pub host: HostId,
}

/// The code a host answers with when it does not hold the mailbox asked
/// for: the caller looks the mailbox up again (a client) or sends a whole
/// copy instead of a delta (a replica).
pub const NOT_HERE: crate::ErrorCode = crate::ErrorCode::NotFound;

/// The code a host answers a read with when its copy of the message is
/// damaged or missing: the owner's client reads another replica, while the
/// host repairs its copy from one.
pub const MESSAGE_UNAVAILABLE: crate::ErrorCode = crate::ErrorCode::Other(503);

/// The most bytes a plaintext stored message may take. It repeats
/// `dem_message::limits::STORED_BYTES_MAX` because this crate sits above
/// that one; dem-node asserts they agree.
pub const STORED_MESSAGE_BYTES_MAX: usize = 2 << 20;
/// What sealing may add to a stored message: the content's AEAD nonce and
/// tag, and the encoding of what puts the attachments back (for each of up
/// to `dem_identity::envelope::ENVELOPE_ATTACHMENTS_MAX` attachments: its
/// id, key, name, media type, sizes and splice position).
pub const SEAL_FRAMING_BYTES_MAX: usize = 256 << 10;
/// The largest ciphertext a [`HostRequest::DeliverSealed`] may carry: a
/// stored message at its limit, sealed. Hosts refuse more before hashing.
pub const SEALED_CIPHERTEXT_BYTES_MAX: usize = STORED_MESSAGE_BYTES_MAX + SEAL_FRAMING_BYTES_MAX;
/// Room for the sealed blob's magic and the encoding of its signed
/// envelope around the envelope's body (signer, time, nonce, signature,
/// field names).
const SEALED_BLOB_ENCODING_BYTES_MAX: usize = 4096;
/// The largest message blob a host stores, replicates, exports or
/// imports: a plaintext stored message, or a sealed mail's blob
/// (`SealedMail::to_blob`: the magic, the signed envelope and the
/// ciphertext), whichever is larger.
pub const BLOB_BYTES_MAX: usize =
    SEALED_CIPHERTEXT_BYTES_MAX + ENVELOPE_BODY_BYTES_MAX + SEALED_BLOB_ENCODING_BYTES_MAX;

/// A mail and its sender's seal over its content: an RFC 5322 message as
/// stored (large part bodies cut out verbatim into floating attachments,
/// which the sender uploaded first) and the references that put them back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedMail {
    /// The stored bytes, at most `dem_message::limits::STORED_BYTES_MAX`.
    #[serde(with = "serde_bytes")]
    pub message: Vec<u8>,
    /// The cut-out parts, ascending by `splice_at`.
    pub attachments: Vec<AttachmentRef>,
    /// The sender's registered name, which the message's From must name.
    pub sender_name: String,
    pub seal: MailSeal,
}

impl SignedMail {
    /// Seals `message` with its `attachments` as `key`'s, sent under
    /// `sender_name`. The sender's client does this; the receiving host
    /// checks it with [`sealed_content`] and the key dispatch resolves for
    /// `sender_name`.
    pub fn seal(
        key: &KeyPair,
        sender_name: String,
        message: Vec<u8>,
        attachments: Vec<AttachmentRef>,
    ) -> Self {
        let sender = key.user_id();
        let hash = *blake3::hash(&message).as_bytes();
        let seal = sealed_content(&hash, message.len() as u64, &attachments, &sender, |c| {
            MailSeal::seal(key, c)
        });
        SignedMail {
            message,
            attachments,
            sender_name,
            seal,
        }
    }

    /// The mail's id: its content's, so delivering it twice files it once.
    pub fn id(&self) -> String {
        mail_id(&self.seal.digest)
    }
}

/// The `MailContent` a seal covers, for a stored message of this hash and
/// size with these attachments, sent by `sender`: the one mapping both the
/// sealing client and the checking host use.
pub fn sealed_content<R>(
    message_hash: &[u8; 32],
    message_size_bytes: u64,
    attachments: &[AttachmentRef],
    sender: &UserId,
    f: impl FnOnce(&MailContent<'_>) -> R,
) -> R {
    let attachments: Vec<SealedRef> = attachments
        .iter()
        .map(|a| SealedRef {
            hash: a.hash.clone(),
            name: a.name.clone(),
            media_type: a.media_type.clone(),
            size_bytes: a.size_bytes,
            splice_at: a.splice_at,
        })
        .collect();
    f(&MailContent {
        from_user: sender,
        message_hash,
        message_size_bytes,
        attachments: &attachments,
    })
}

/// The signature tag of a [`PluginUpload`], distinct from owner calls so
/// neither signature can pass for the other.
pub const PLUGIN_UPLOAD: DomainTag = DomainTag::new(b"dem/1 plugin-upload\0");

/// The owner installs a filter plugin whose code the host may not have: the
/// component travels in the signed body (at most one request frame).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginUpload {
    pub mailbox: UserId,
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub code: Vec<u8>,
    pub config: String,
    pub order: u32,
}

/// A request to a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HostRequest {
    /// An owner's call on their mailbox.
    Owner(Signed<OwnerCall>),
    /// Create a mailbox here for its owner (after dispatch placed it).
    Create(Signed<CreateOrder>),
    /// Deliver a mail to `to`'s mailbox.
    Deliver { to: UserId, mail: Box<SignedMail> },
    /// Deliver a mail sealed end to end to the mailbox of its envelope's
    /// recipient: the host sees the envelope and the ciphertext (at most
    /// [`SEALED_CIPHERTEXT_BYTES_MAX`]), never the message. Answered
    /// `Delivered`, as `Deliver`.
    DeliverSealed { mail: Box<SealedMail> },
    /// Move a mailbox here: the export frames follow on the stream, each a
    /// raw frame; the answer comes after `End`.
    Migrate {
        header: Box<ExportHeader>,
        epoch: Epoch,
    },
    /// Which of these code hashes this host lacks.
    MissingCode { hashes: Vec<crate::ids::CodeHash> },
    /// Move the owner's mailbox to the order's target host now. `to_addr`,
    /// where the caller knows that host to listen, lets the holder start
    /// the move while dispatch authorizes it (`node::grant`); it is not
    /// signed, and need not be: the holder's connection pins the order's
    /// host key, so a wrong address only fails. Without it the holder
    /// waits for dispatch's placement.
    Pull {
        order: Signed<MoveOrder>,
        to_addr: Option<String>,
    },
    /// Store an attachment; its chunks follow as raw frames.
    AttachmentPut {
        id: AttachmentId,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
    },
    /// From a listed holder of the attachment: store another replica; its
    /// chunks follow as raw frames, as for `AttachmentPut`. The receiver
    /// does not report the location: the sender records the whole holder
    /// set. Answered `AlreadyStored`, or `Done` then `Done` once durable.
    AttachmentCopy {
        id: AttachmentId,
        size_bytes: u64,
        name: Option<String>,
        media_type: Option<String>,
    },
    /// Stream `[start, end)` of an attachment back as raw chunk frames.
    AttachmentGet {
        id: AttachmentId,
        start: u64,
        end: u64,
    },
    /// Install a plugin, code included, into the signer's mailbox.
    PluginAdd(Box<Signed<PluginUpload>>),
    /// From another replica of `mailbox`: ops it made or applied that this
    /// replica may lack, in its order (empty: just asking for the vector).
    /// Answered `Synced`.
    Sync {
        mailbox: UserId,
        ops: Vec<serde_bytes::ByteBuf>,
        /// The message blobs the deliveries among `ops` name (each checked
        /// against its op's hash by the receiver).
        #[serde(default)]
        messages: Vec<serde_bytes::ByteBuf>,
    },
    /// From a host whose copy of `mailbox` is no longer listed: ops it
    /// holds that this (listed) replica lacks, in its order, handed back
    /// before that copy is discarded. Taken like `Sync` (in order, without
    /// gaps, plugin code fetched and checked), but only by a listed replica
    /// and only from a host the dispatch unit knows. Answered `Synced`.
    HandBack {
        mailbox: UserId,
        ops: Vec<serde_bytes::ByteBuf>,
        /// As for `Sync`.
        #[serde(default)]
        messages: Vec<serde_bytes::ByteBuf>,
    },
    /// From a replica of the mailbox: a whole copy of it follows as export
    /// frames (as for `Migrate`). It replaces a copy here only if it has
    /// everything that copy has. Answered `Imported`.
    Copy { header: Box<ExportHeader> },
    /// Which mailboxes this host holds, with their version vectors.
    Replicas,
    /// Which unlisted attachment copies this host holds back (at most
    /// [`HELD_BACK_ATTACHMENTS_MAX`]). Answered `HeldBack`.
    HeldBack,
    /// Whether this host holds a copy of `mailbox`, and at which vector:
    /// the source of a move asks, to send only the ops a copy lacks.
    /// Answered `Holds`.
    Holds { mailbox: UserId },
    /// Move a mailbox here onto the older copy this host holds: the
    /// missing components and ops follow as `replica::DeltaFrame`s, each
    /// a raw frame. Answered `Imported` (as `Migrate`).
    MoveDelta(Box<DeltaHeader>),
    /// The replication bytes this host received so far. Answered
    /// `Traffic`.
    Traffic,
    /// The bytes of a component (plugin code a replica lacks), answered
    /// `Code` in one frame.
    CodeGet { hash: crate::ids::CodeHash },
    /// What an administrator may see of this host's copy of `mailbox`:
    /// its vector, sizes and counts, and its plugins by name and code
    /// hash (never their config, never a mail). Only a dispatch unit of
    /// the host's backbone may ask (the monitor's inspect). Answered
    /// `Described`.
    Describe { mailbox: UserId },
    /// From a listed replica of `mailbox` whose copy of one of its message
    /// blobs is damaged or missing: the bytes of blob `hash`, which this
    /// host's copy of the mailbox must name. Answered `Message`.
    MessageGet {
        mailbox: UserId,
        #[serde(with = "serde_bytes")]
        hash: [u8; 32],
    },
    /// From a listed replica of `mailbox` about to send it here: which of
    /// these message blobs (BLAKE3s, 32 bytes each, concatenated; at most
    /// [`MISSING_MESSAGES_MAX`]) this host's copy of the mailbox does not
    /// name, so a move or copy to a host that holds them ships the index
    /// only. Answered `MissingMessages`.
    MissingMessages {
        mailbox: UserId,
        hashes: serde_bytes::ByteBuf,
    },
}

/// Most hashes one `MissingMessages` asks about: 1.6 MB, within a frame.
pub const MISSING_MESSAGES_MAX: usize = 50_000;

/// A host's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HostResponse {
    Done,
    Reply(Box<Response>),
    Delivered(Delivered),
    /// The mailbox is not here any more; ask `MovedTo`.
    Moved(MovedTo),
    /// Code hashes this host lacks.
    Missing(Vec<crate::ids::CodeHash>),
    /// The mailbox was imported at this log position.
    Imported {
        log_position: u64,
    },
    /// The attachment is already stored: no need to send it.
    AlreadyStored,
    /// The attachment follows: its total size; then chunk frames.
    Attachment {
        size_bytes: u64,
    },
    /// The replica's version vector after applying what came.
    Synced {
        vv: VersionVector,
    },
    /// The mailboxes held here, their version vectors and state digests.
    Replicas(Vec<ReplicaState>),
    /// Attachments whose unlisted copies this host holds back: no live
    /// listed holder was seen to have them.
    HeldBack {
        attachments: Vec<crate::attachment::AttachmentId>,
    },
    /// This host's copy's vector (`None`: it holds no copy).
    Holds {
        vv: Option<VersionVector>,
    },
    /// The replication bytes this host received.
    Traffic(ReplicationTraffic),
    /// A component's bytes, for `CodeGet`.
    Code(serde_bytes::ByteBuf),
    /// The copy `Describe` asked about (`None`: it holds no copy).
    Described(Option<Box<MailboxDescription>>),
    /// A message blob's bytes, for `MessageGet`.
    Message(serde_bytes::ByteBuf),
    /// The hashes of `MissingMessages` this host's copy does not name,
    /// concatenated.
    MissingMessages(serde_bytes::ByteBuf),
}

/// One copy of a mailbox as its host describes it to an administrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailboxDescription {
    pub vv: VersionVector,
    pub stats: crate::mail::MailboxStats,
    /// Installed plugins: (name, BLAKE3 of the code, hex), in run order.
    pub plugins: Vec<(String, String)>,
}

/// Most attachment ids one `HeldBack` answer lists.
pub const HELD_BACK_ATTACHMENTS_MAX: usize = 256;

/// One mailbox replica as its host reports it to `dem admin status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaState {
    pub user: UserId,
    pub vv: VersionVector,
    /// The guest's order-free state digest; `None` if the guest could not
    /// compute it (a trap), which counts as not in sync.
    #[serde(default)]
    pub state_digest: Option<[u8; 32]>,
    /// The copy is no longer listed but holds ops no listed replica was
    /// seen to hold, so it is kept until it has handed them back.
    #[serde(default)]
    pub held_back: bool,
}

/// The request of a delta move: what the ops that follow bring the
/// target's copy from and to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaHeader {
    pub mailbox: UserId,
    /// The location's epoch after the move (the old one + 1).
    pub epoch: Epoch,
    /// The mailbox component, which the target's copy must run too.
    pub code_hash: crate::ids::CodeHash,
    /// The target copy's vector the ops were chosen against.
    pub base: VersionVector,
    /// The source's vector: the copy's after the ops.
    pub vv: VersionVector,
    /// How many ops follow.
    pub ops: u64,
}

/// Replication wire bytes a host received, counted per frame (the u32
/// length prefix included), by kind; and how many transfer requests came
/// (accepted or refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationTraffic {
    /// `Sync` request frames (ops pushed by peer replicas).
    pub sync_bytes: u64,
    /// `Copy` and `Migrate` request and export frames (whole states).
    pub full_bytes: u64,
    /// `MoveDelta` request and delta frames.
    pub delta_bytes: u64,
    /// Whole copies (`Copy`) received.
    pub copies: u64,
    /// Moves received as the whole state (`Migrate`).
    pub full_moves: u64,
    /// Moves received as ops onto an older copy (`MoveDelta`).
    pub delta_moves: u64,
    /// `HandBack` request frames (ops from unlisted copies).
    #[serde(default)]
    pub hand_back_bytes: u64,
    /// The ops' own bytes within those frames.
    #[serde(default)]
    pub hand_back_op_bytes: u64,
}
