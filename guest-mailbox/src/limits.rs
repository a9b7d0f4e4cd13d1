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

/// Bytes of one mail as stored: all its text fields, headers and body
/// (attachments are references, their content lives outside the mailbox).
pub const MAIL_BYTES_MAX: u64 = 32 * MIB;

/// Bytes of all mails together. Kept well under [`RESTORE_BYTES_MAX`] so a
/// full mailbox's snapshot can always be restored, and under half the 4 GiB
/// wasm32 address space because a snapshot is held next to the live state.
pub const MAILBOX_BYTES_MAX: u64 = GIB;

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

/// Headers of one mail.
pub const HEADERS_MAX: usize = 1000;

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

/// Items one `list-folder`, `search` or `delete-history` call returns; a
/// larger requested limit is cut down to this.
pub const PAGE_LIMIT_MAX: u32 = 1000;

/// Bytes one `snapshot-read` returns; a larger request is cut down to this.
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
