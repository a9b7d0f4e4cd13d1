//! Every limit the mailbox enforces, in one place.
//!
//! A mailbox runs inside a 32-bit WebAssembly instance whose memory the host
//! caps, and its state is snapshotted whole. Unbounded input would let one
//! sender or one buggy client make a mailbox impossible to snapshot, restore
//! or even run, so every collection and every single value has a ceiling
//! here. Going over one is a typed `too-large` or `limit-reached` error,
//! never a trap.

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Bytes of one mail's index entry: its text fields (from, to, cc,
/// subject, message-id, in-reply-to, references, attachment names and
/// media types) and its hashes. The message itself lives in the host's
/// blob store and does not count; this only stops one mail from taking an
/// unreasonable share of the state (1000 recipients of 320 bytes fit).
pub const MAIL_INDEX_BYTES_MAX: u64 = 512 * KIB;

/// Index bytes of all mails together, as [`MAIL_INDEX_BYTES_MAX`] counts
/// them. Message bytes are outside the state, so a mailbox of 100,000
/// mails and many GiB of messages stays far below this (a few hundred
/// bytes a mail). Kept well under [`RESTORE_BYTES_MAX`] so a full
/// mailbox's snapshot can always be restored, and under half the 4 GiB
/// wasm32 address space because a snapshot is held next to the live state.
pub const MAILBOX_INDEX_BYTES_MAX: u64 = GIB;

/// Bytes of one message as the host reports it (exact or stored size).
/// Not a storage limit, the bytes are outside the state: it keeps the
/// per-folder and mailbox sums of sizes exact in a u64 (far more mails
/// than fit in the state, each this large, still do not overflow).
pub const MESSAGE_BYTES_MAX: u64 = 64 * GIB;

/// Message ids in one mail's References. A long thread's References grow
/// with every reply; the host keeps only the last ones (RFC 5322 3.6.4
/// allows trimming), and the mailbox refuses more rather than choosing.
pub const REFERENCES_MAX: usize = 32;

/// Bytes of a message id (Message-ID, In-Reply-To, each reference): the
/// longest line RFC 5322 allows.
pub const MESSAGE_ID_BYTES_MAX: usize = 998;

/// Bytes of a mail id (assigned by the host, usually a hash).
pub const MAIL_ID_BYTES_MAX: usize = 128;

/// Folders, INBOX included.
pub const FOLDERS_MAX: usize = 1000;

/// Bytes of a folder name (the whole path), keyword, preference key or
/// plugin name.
pub const NAME_BYTES_MAX: usize = 255;

/// Levels of folder hierarchy (`a/b/c` has 3).
pub const FOLDER_DEPTH_MAX: usize = 16;

/// To and Cc addresses of one mail together.
pub const RECIPIENTS_MAX: usize = 1000;

/// Attachment references of one mail.
pub const ATTACHMENTS_MAX: usize = 1000;

/// Keywords set on one mail at a time.
pub const KEYWORDS_MAX: usize = 64;

/// Per-keyword change stamps kept on one mail, set or removed. Removed
/// keywords keep their stamp so a late, older "add" cannot revive them;
/// past this bound the oldest removed-keyword stamps are forgotten.
pub const KEYWORD_STAMPS_MAX: usize = 2 * KEYWORDS_MAX;

/// Contacts in the address book.
pub const CONTACTS_MAX: usize = 10_000;

/// Bytes of an e-mail address (RFC 5321 allows 64 + 1 + 255).
pub const ADDRESS_BYTES_MAX: usize = 320;

/// Bytes of a contact's name.
pub const CONTACT_NAME_BYTES_MAX: usize = 1024;

/// Bytes of a contact's note.
pub const CONTACT_NOTE_BYTES_MAX: usize = 16 * KIB as usize;

/// Patterns in the allow list, and separately in the block list.
pub const SENDER_PATTERNS_MAX: usize = 10_000;

/// Preferences (key/value pairs).
pub const PREFERENCES_MAX: usize = 1000;

/// Bytes of one preference value.
pub const PREFERENCE_VALUE_BYTES_MAX: usize = 64 * KIB as usize;

/// Installed filter plugins; each one runs on every delivery.
pub const PLUGINS_MAX: usize = 64;

/// Bytes of one plugin's configuration.
pub const PLUGIN_CONFIG_BYTES_MAX: usize = 64 * KIB as usize;

/// Items one `list-folder`, `search`, `delete-history`, `message-refs` or
/// `take-converted` call returns; a larger requested limit is cut down to
/// this.
pub const PAGE_LIMIT_MAX: u32 = 1000;

/// Bytes one `snapshot-read` returns; a larger request is cut down to this.
/// `take-converted` also stops adding messages once it holds this many
/// bytes, so one call never copies a huge batch across the boundary.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u32 = 4 * MIB as u32;

/// Bytes of a snapshot `restore-begin` accepts.
pub const RESTORE_BYTES_MAX: u64 = 2 * GIB;

/// Delete tombstones kept. Past this the oldest are dropped, see
/// `Mailbox::record_tombstone` for the trade-off.
pub const TOMBSTONES_MAX: usize = 1_000_000;

/// Folder changes kept in the replicated history (`folder_log.rs`); past
/// this the oldest is folded into the base tree. Each one costs a replay
/// step whenever a folder changes, and folder changes are rare.
pub const FOLDER_LOG_MAX: usize = 4096;
