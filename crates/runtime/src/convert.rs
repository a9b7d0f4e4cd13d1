//! Conversions between the types `bindgen!` generates (`bindings`) and their
//! plain mirrors in `proto::mail`, which everything outside `runtime` uses.
//!
//! They happen once per guest call, at the call: arguments are moved into
//! the generated types and answers moved out, field by field, so no string
//! or list is copied or re-encoded. Each conversion names every field or
//! case, so a change to the WIT that the mirrors miss fails to compile here;
//! the tests below check that both sides encode alike, since the op log and
//! the wire hold what the generated types once wrote.

use super::bindings as w;
use dem_proto::mail as m;

/// Converts one field: moved as it is, or converted with `Into` as a value
/// (`into`), per element (`vec`), inside an option (`opt`) or both
/// (`opt_vec`).
macro_rules! field {
    ($v:expr) => {
        $v
    };
    ($v:expr, into) => {
        $v.into()
    };
    ($v:expr, vec) => {
        $v.into_iter().map(Into::into).collect()
    };
    ($v:expr, opt) => {
        $v.map(Into::into)
    };
    ($v:expr, opt_vec) => {
        $v.map(|l| l.into_iter().map(Into::into).collect())
    };
}

/// `From` both ways for a record whose fields are listed in full.
macro_rules! record {
    ($name:ident { $($field:ident $(: $how:ident)?),* $(,)? }) => {
        impl From<w::$name> for m::$name {
            fn from(v: w::$name) -> Self {
                let w::$name { $($field),* } = v;
                m::$name { $($field: field!($field $(, $how)?)),* }
            }
        }

        impl From<m::$name> for w::$name {
            fn from(v: m::$name) -> Self {
                let m::$name { $($field),* } = v;
                w::$name { $($field: field!($field $(, $how)?)),* }
            }
        }
    };
}

/// `From` both ways for a variant or enum whose cases are listed in full,
/// each with or without a payload (converted with `Into`).
macro_rules! cases {
    ($name:ident { $($case:ident $(($p:ident))?),* $(,)? }) => {
        impl From<w::$name> for m::$name {
            fn from(v: w::$name) -> Self {
                match v {
                    $(w::$name::$case $(($p))? => m::$name::$case $(($p.into()))?),*
                }
            }
        }

        impl From<m::$name> for w::$name {
            fn from(v: m::$name) -> Self {
                match v {
                    $(m::$name::$case $(($p))? => w::$name::$case $(($p.into()))?),*
                }
            }
        }
    };
}

/// Each generated flag beside its mirror. The generated flags have no
/// public bits, so they are compared flag by flag.
const FLAGS: [(w::MailFlags, m::MailFlags); 5] = [
    (w::MailFlags::SEEN, m::MailFlags::SEEN),
    (w::MailFlags::ANSWERED, m::MailFlags::ANSWERED),
    (w::MailFlags::FLAGGED, m::MailFlags::FLAGGED),
    (w::MailFlags::DRAFT, m::MailFlags::DRAFT),
    (w::MailFlags::DELETED, m::MailFlags::DELETED),
];

impl From<w::MailFlags> for m::MailFlags {
    fn from(v: w::MailFlags) -> Self {
        FLAGS
            .iter()
            .filter(|(wit, _)| v.contains(*wit))
            .fold(m::MailFlags::empty(), |acc, (_, f)| acc | *f)
    }
}

impl From<m::MailFlags> for w::MailFlags {
    fn from(v: m::MailFlags) -> Self {
        FLAGS
            .iter()
            .filter(|(_, f)| v.contains(*f))
            .fold(w::MailFlags::empty(), |acc, (wit, _)| acc | *wit)
    }
}

// interface `types`
record!(OpContext {
    now_ms,
    hlc,
    replica
});
record!(Header { name, value });
record!(AttachmentRef {
    hash,
    name,
    media_type,
    size_bytes,
    splice_at,
});
record!(BlobRef { hash, size_bytes });
record!(NewMail {
    id,
    from,
    to,
    cc,
    subject,
    date_ms,
    message_id,
    in_reply_to,
    references,
    message: into,
    size_bytes,
    attachments: vec,
});
record!(Placement {
    folder,
    flags: into,
    keywords,
    spam_score,
});
cases!(SenderStatus {
    Unknown,
    Contact,
    Allowed,
    Blocked
});
record!(MailView {
    id,
    from,
    to,
    cc,
    subject,
    date_ms,
    message_id,
    headers: vec,
    body_preview,
    body_size_bytes,
    attachments: vec,
    sender: into,
});
record!(FlagChange {
    flags: into,
    keywords
});
cases!(Verdict {
    Accept,
    Reject(s),
    FileInto(s),
    AddFlags(c),
    SpamScore(x),
});

// interface `api`
record!(Limit {
    what,
    limit,
    actual
});
cases!(MailboxError {
    NotFound(s),
    AlreadyExists(s),
    InvalidName(s),
    InvalidArgument(s),
    TooLarge(l),
    LimitReached(l),
    NotAllowed(s),
    Snapshot(s),
});
record!(Delivered {
    uid,
    folder,
    duplicate,
    placement: into,
});
record!(MailSummary {
    id,
    folder,
    uid,
    from,
    to,
    cc,
    subject,
    date_ms,
    received_ms,
    message_id,
    in_reply_to,
    flags: into,
    keywords,
    size_bytes,
    attachment_count,
    spam_score,
});
record!(MailPage { total, items: vec });
record!(MailDetail {
    summary: into,
    references,
    message: into,
    attachments: vec,
});
record!(FlagState {
    flags: into,
    keywords
});
record!(FolderInfo {
    name,
    uid_validity,
    uid_next,
    total,
    unseen,
    size_bytes,
});
record!(Tombstone {
    id,
    deleted_ms,
    hlc
});
record!(SearchQuery {
    from,
    to,
    subject,
    body_terms,
    text_terms,
    folder,
    since_ms,
    before_ms,
    flags_set: into,
    flags_unset: into,
    keyword,
});
record!(Contact {
    name,
    address,
    note
});
cases!(SenderList { Allow, Block });
record!(PluginEntry {
    name,
    code_hash,
    config,
    order
});
record!(MailboxStats {
    mails,
    mail_bytes,
    folders,
    contacts,
    tombstones,
    plugins,
    state_bytes,
});
record!(SnapshotInfo {
    schema_version,
    size_bytes
});

/// Moves a mirror out of `slot` as the generated type, to lend it to a
/// guest call; the caller puts it back (`*slot = lent.into()`) after the
/// call, and the empty value holds the place meanwhile.
pub(super) fn lend<M: Default + Into<W>, W>(slot: &mut M) -> W {
    std::mem::take(slot).into()
}

/// Converts every element of a list the guest returned.
pub(super) fn list<W, M: From<W>>(v: Vec<W>) -> Vec<M> {
    v.into_iter().map(M::from).collect()
}

#[cfg(test)]
mod tests;
