//! The records of the `dem:mail` WIT package (`types` and `api` in
//! `wit/wit/`) as plain serde types: what mailbox calls, their answers, the
//! operation log and the wire carry.
//!
//! They mirror what `bindgen!` makes of the WIT (same names, fields and
//! cases, in the same order) but need no wasmtime, so the wire protocol can
//! live in a crate that knows nothing of the wasm runtime. Their rmp-serde
//! and JSON encodings equal those of the generated types, because the op
//! log on disk and the wire were written with those: `runtime::convert`
//! converts at the guest call boundary and tests that the encodings agree.
//! A change to the WIT must change both sides.
//!
//! The records a guest call takes as arguments also derive `Default`: the
//! runtime moves a value into the generated type for the call and back, and
//! the empty value holds its place meanwhile.

use std::fmt;
use std::ops::{BitAnd, BitAndAssign, BitOr, BitOrAssign};

use serde::{Deserialize, Serialize};

// ---- interface `types` ----

/// Standard IMAP system flags (the WIT `flags mail-flags`): a bit set, bit
/// `i` being `FLAG_NAMES[i]`, as in the canonical ABI.
///
/// Serialised as one `u8` of those bits; bits beyond the known flags are
/// refused when decoding.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MailFlags(u8);

/// The IMAP names of the system flags, in bit order.
pub const FLAG_NAMES: [(&str, MailFlags); 5] = [
    ("seen", MailFlags::SEEN),
    ("answered", MailFlags::ANSWERED),
    ("flagged", MailFlags::FLAGGED),
    ("draft", MailFlags::DRAFT),
    ("deleted", MailFlags::DELETED),
];

impl MailFlags {
    pub const SEEN: Self = Self(1 << 0);
    pub const ANSWERED: Self = Self(1 << 1);
    pub const FLAGGED: Self = Self(1 << 2);
    pub const DRAFT: Self = Self(1 << 3);
    pub const DELETED: Self = Self(1 << 4);

    /// Every known flag.
    const ALL_BITS: u8 = (1 << FLAG_NAMES.len()) - 1;

    pub const fn empty() -> Self {
        Self(0)
    }

    pub const fn all() -> Self {
        Self(Self::ALL_BITS)
    }

    /// The bits, bit `i` being `FLAG_NAMES[i]`.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The flags of `bits`, or `None` if a bit names no flag.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        if bits & !Self::ALL_BITS == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set here.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// The names of the flags that are set, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        FLAG_NAMES
            .iter()
            .filter(|(_, f)| self.contains(*f))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Parses one flag name (`seen`, `\Seen`, `SEEN`...).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim_start_matches('\\');
        FLAG_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, f)| *f)
    }
}

impl BitOr for MailFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for MailFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for MailFlags {
    type Output = Self;

    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl BitAndAssign for MailFlags {
    fn bitand_assign(&mut self, rhs: Self) {
        self.0 &= rhs.0;
    }
}

/// `(SEEN|DRAFT)`, as wasmtime prints the generated flags.
impl fmt::Debug for MailFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        let mut first = true;
        for (name, flag) in FLAG_NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                first = false;
                f.write_str(&name.to_ascii_uppercase())?;
            }
        }
        f.write_str(")")
    }
}

impl Serialize for MailFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for MailFlags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bits = u8::deserialize(d)?;
        Self::from_bits(bits)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown mail flag bits {bits:#x}")))
    }
}

/// Time and ordering stamp of one mutating call, supplied by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OpContext {
    /// Wall-clock time of the call, milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// Hybrid logical clock of the call; orders concurrent changes.
    pub hlc: u64,
    /// Replica that made the change; breaks `hlc` ties.
    pub replica: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A floating attachment: the mail holds a reference, never the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// BLAKE3 of the content, lower-case hex.
    pub hash: String,
    pub name: String,
    pub media_type: String,
    pub size_bytes: u64,
    /// Where the content goes back into the stored message to rebuild the
    /// exact original bytes (a large MIME part body cut out verbatim);
    /// `None` for a reference that was never part of the message bytes
    /// (mail from before schema 3).
    #[serde(default)]
    pub splice_at: Option<u64>,
}

/// A message's stored bytes, kept by the host in its blob store beside the
/// mailbox, never in the mailbox's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// BLAKE3 of the stored bytes, lower-case hex.
    pub hash: String,
    pub size_bytes: u64,
}

impl BlobRef {
    /// The ref of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            hash: blake3::hash(bytes).to_hex().to_string(),
            size_bytes: bytes.len() as u64,
        }
    }

    /// The hash as bytes, or `None` if it is not 64 lower-case hex digits.
    pub fn hash_bytes(&self) -> Option<[u8; 32]> {
        hash_from_hex(&self.hash)
    }
}

/// 64 lower-case hex digits as 32 bytes.
pub fn hash_from_hex(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A mail as it arrives: the index the mailbox keeps of an RFC 5322
/// message the host parsed and stored. The host has assigned `id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMail {
    pub id: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date_ms: i64,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The message as stored: large parts cut out into `attachments`.
    pub message: BlobRef,
    /// Size of the exact message, cut parts included (RFC822.SIZE).
    pub size_bytes: u64,
    pub attachments: Vec<AttachmentRef>,
}

/// Where the host files a delivered mail, after the filters ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub folder: String,
    pub flags: MailFlags,
    pub keywords: Vec<String>,
    /// Score from a spam filter, if one gave one.
    pub spam_score: Option<f32>,
}

/// How the mailbox knows a sender; filters use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SenderStatus {
    #[default]
    Unknown,
    Contact,
    Allowed,
    Blocked,
}

/// What a filter sees of a mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailView {
    pub id: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date_ms: i64,
    pub message_id: String,
    pub headers: Vec<Header>,
    /// The first bytes of the body, at most the host's preview limit.
    pub body_preview: String,
    pub body_size_bytes: u64,
    pub attachments: Vec<AttachmentRef>,
    pub sender: SenderStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagChange {
    pub flags: MailFlags,
    pub keywords: Vec<String>,
}

/// What one filter decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    Accept,
    Reject(String),
    FileInto(String),
    AddFlags(FlagChange),
    SpamScore(f32),
}

// ---- interface `api` ----

/// A limit that a call went over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub what: String,
    pub limit: u64,
    pub actual: u64,
}

/// An expected failure of a mailbox call; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxError {
    /// No mail, folder or entry with this id or name.
    NotFound(String),
    /// A folder, contact or plugin with this name already exists.
    AlreadyExists(String),
    /// A name that is empty, too long, or has forbidden characters.
    InvalidName(String),
    /// An argument that is malformed in some other way.
    InvalidArgument(String),
    /// A single value is larger than allowed.
    TooLarge(Limit),
    /// A count limit (folders, contacts, ...) has been reached.
    LimitReached(Limit),
    /// The operation is not allowed on this object (e.g. delete INBOX).
    NotAllowed(String),
    /// A snapshot could not be made or restored.
    Snapshot(String),
}

impl MailboxError {
    /// A sentence for users; `Display` is for developers.
    pub fn describe(&self) -> String {
        match self {
            MailboxError::NotFound(what) => format!("not found: {what}"),
            MailboxError::AlreadyExists(what) => format!("already exists: {what}"),
            MailboxError::InvalidName(why) => format!("invalid name: {why}"),
            MailboxError::InvalidArgument(why) => format!("invalid argument: {why}"),
            MailboxError::TooLarge(l) => {
                format!("{} too large: {} > limit {}", l.what, l.actual, l.limit)
            }
            MailboxError::LimitReached(l) => {
                format!(
                    "limit reached for {}: {} (limit {})",
                    l.what, l.actual, l.limit
                )
            }
            MailboxError::NotAllowed(why) => format!("not allowed: {why}"),
            MailboxError::Snapshot(why) => format!("snapshot: {why}"),
        }
    }
}

/// `MailboxError::NotFound("m1")`: the text the generated type printed, which
/// restore errors and logs carry.
impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxError::{self:?}")
    }
}

impl std::error::Error for MailboxError {}

/// Result of a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivered {
    /// Where the mail with this id is now; for a deleted id, 0 and "".
    pub uid: u32,
    pub folder: String,
    /// True if a mail with this id was already here (or deleted):
    /// delivery is idempotent by mail id.
    pub duplicate: bool,
    /// This delivery's placement as the mailbox applied it (INBOX where
    /// the asked folder was invalid, past the folder limit or out of
    /// UIDs; for a duplicate still this delivery's). The host logs the
    /// delivery with it, so a replay or a replica, which holds no folder
    /// limit, does what the mailbox did.
    pub placement: Placement,
}

/// A mail's headers, as lists show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailSummary {
    pub id: String,
    pub folder: String,
    pub uid: u32,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date_ms: i64,
    pub received_ms: i64,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub flags: MailFlags,
    pub keywords: Vec<String>,
    pub size_bytes: u64,
    pub attachment_count: u32,
    pub spam_score: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailPage {
    /// Mails in the folder in all.
    pub total: u32,
    /// Newest first.
    pub items: Vec<MailSummary>,
}

/// What the mailbox knows of one mail beyond its summary: where its bytes
/// are. The host reads them from its blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailDetail {
    pub summary: MailSummary,
    pub references: Vec<String>,
    pub message: BlobRef,
    pub attachments: Vec<AttachmentRef>,
}

// ---- the wire only: no WIT counterpart ----

/// A range of a stored message's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    /// Exclusive; clamped to the stored size.
    pub end: u64,
}

/// What a `get` returns beside the mail's detail, which always comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GetParts {
    /// This range of the stored message (large parts cut out; the client
    /// splices the attachments back for the exact bytes).
    pub message: Option<ByteRange>,
}

/// A host's answer to `get`: the mail's detail and the asked range of its
/// stored message, read from the host's blob store and checked there
/// against its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailRead {
    pub detail: MailDetail,
    #[serde(with = "serde_bytes_opt")]
    pub bytes: Option<Vec<u8>>,
}

/// `Option<Vec<u8>>` as MessagePack `bin`, not a list of integers.
mod serde_bytes_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(serde_bytes::Bytes::new(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<serde_bytes::ByteBuf>::deserialize(d)?.map(|b| b.into_vec()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagState {
    pub flags: MailFlags,
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderInfo {
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub total: u32,
    pub unseen: u32,
    pub size_bytes: u64,
}

/// A delete, kept so replicas never bring a deleted mail back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub id: String,
    pub deleted_ms: i64,
    pub hlc: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Case-insensitive substring of the From address or name.
    pub from: Option<String>,
    /// Substring of any To or Cc address.
    pub to: Option<String>,
    pub subject: Option<String>,
    /// Every word of every term must be in the body, as a whole word or
    /// the start of one ("numb" finds "numbers"): words are cut at
    /// anything not a letter or digit and compared lower-cased. The host
    /// looks them up in its full-text index of the messages.
    pub body_terms: Vec<String>,
    /// As `body_terms`, but a word may also be in From, To, Cc or Subject.
    pub text_terms: Vec<String>,
    pub folder: Option<String>,
    pub since_ms: Option<i64>,
    pub before_ms: Option<i64>,
    pub flags_set: MailFlags,
    pub flags_unset: MailFlags,
    pub keyword: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub address: String,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SenderList {
    Allow,
    Block,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEntry {
    pub name: String,
    /// BLAKE3 of the plugin component, lower-case hex.
    pub code_hash: String,
    pub config: String,
    /// Filters run in ascending order.
    pub order: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MailboxStats {
    pub mails: u32,
    pub mail_bytes: u64,
    pub folders: u32,
    pub contacts: u32,
    pub tombstones: u32,
    pub plugins: u32,
    /// Size of the serialised state, as a snapshot would be.
    pub state_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub schema_version: u32,
    pub size_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_serde() {
        for bits in 0u8..32 {
            let flags = FLAG_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .fold(MailFlags::empty(), |acc, (_, (_, f))| acc | *f);
            let bytes = rmp_serde::to_vec(&flags).unwrap();
            assert_eq!(bytes, rmp_serde::to_vec(&bits).unwrap());
            let back: MailFlags = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, flags);
        }
        assert!(rmp_serde::from_slice::<MailFlags>(&rmp_serde::to_vec(&0xffu8).unwrap()).is_err());
        assert!(rmp_serde::from_slice::<MailFlags>(&rmp_serde::to_vec(&0x20u8).unwrap()).is_err());
    }

    #[test]
    fn flag_names_parse_imap_spellings() {
        assert_eq!(MailFlags::from_name("\\Seen"), Some(MailFlags::SEEN));
        assert_eq!(MailFlags::from_name("FLAGGED"), Some(MailFlags::FLAGGED));
        assert_eq!(MailFlags::from_name("junk"), None);
        assert_eq!(
            (MailFlags::SEEN | MailFlags::DRAFT).names(),
            vec!["seen", "draft"]
        );
    }

    #[test]
    fn flags_set_operations() {
        let mut f = MailFlags::empty();
        assert!(f.is_empty());
        f.insert(MailFlags::SEEN | MailFlags::DELETED);
        assert!(f.contains(MailFlags::SEEN) && f.contains(MailFlags::DELETED));
        assert!(!f.contains(MailFlags::SEEN | MailFlags::DRAFT));
        assert!(f.intersects(MailFlags::SEEN | MailFlags::DRAFT));
        f.remove(MailFlags::SEEN);
        assert_eq!(f, MailFlags::DELETED);
        assert_eq!(f & MailFlags::all(), MailFlags::DELETED);
        assert_eq!(MailFlags::all().names().len(), FLAG_NAMES.len());
        assert_eq!(MailFlags::from_bits(0x20), None);
        assert_eq!(
            format!("{:?}", MailFlags::SEEN | MailFlags::DRAFT),
            "(SEEN|DRAFT)"
        );
    }

    #[test]
    fn mailbox_errors_describe_and_display() {
        let e = MailboxError::TooLarge(Limit {
            what: "body".into(),
            limit: 10,
            actual: 11,
        });
        assert_eq!(e.describe(), "body too large: 11 > limit 10");
        assert_eq!(
            MailboxError::NotFound("m1".into()).to_string(),
            "MailboxError::NotFound(\"m1\")"
        );
    }
}
