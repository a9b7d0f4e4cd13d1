//! The mail index of `MailboxState`: every mail by id, each kept as the
//! MessagePack bytes it was restored from until something reads it.
//!
//! Waking a mailbox restores its snapshot, and decoding ten strings and a
//! few collections per mail made that cost about 3 µs a mail, nearly all of
//! a wake, although most wakes touch a handful of mails. So a restore keeps
//! the snapshot buffer and only notes where each mail's entry is in it
//! (schema 5 stores each entry as a `bin`). A mail is decoded the first
//! time it is read, and its bytes stop counting once it is changed; a
//! snapshot copies the bytes of every mail still as restored.
//!
//! A restored entry is still checked whole at restore: [`Mails::heads`]
//! reads each one through borrowing view types that mirror [`StoredMail`]
//! field by field but allocate nothing, which both validates it (a view
//! accepts exactly what the real type accepts) and gives the few fields the
//! derived indices need. Decoding a checked entry later therefore cannot
//! fail; if it did, that would be a bug, so it is an assert. Entries in
//! the form this build writes take a faster hand-written path
//! (`mails/walk.rs`) to the same answer.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hash::Hash;
use crate::state::{Stamp, StoredMail};
use crate::wit::MailFlags;

/// Every mail by id, in id order (so encoding is deterministic).
#[derive(Clone, Default)]
pub struct Mails {
    slots: BTreeMap<String, Slot>,
    /// The restored snapshot that `Slot::raw` ranges point into; shared so
    /// that cloning a state does not copy it.
    buf: Rc<Vec<u8>>,
}

/// One mail: its encoded entry, its decoded form, or both. Never neither.
#[derive(Clone)]
struct Slot {
    /// Where in `Mails::buf` the mail's entry is, as (start, length),
    /// while it is still exactly what the mail encodes to.
    raw: Option<(u32, u32)>,
    /// Boxed, so that a mail not yet decoded costs a pointer.
    mail: OnceCell<Box<StoredMail>>,
}

/// What the derived indices need of a mail, read without decoding it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MailHead {
    pub folder: u32,
    pub uid: u32,
    pub date_ms: i64,
    pub flags: u8,
    pub size_bytes: u64,
    pub blob_bytes: u64,
    pub blob: Hash,
    /// `StoredMail::index_bytes`.
    pub index_bytes: u64,
}

impl MailHead {
    pub fn of(m: &StoredMail) -> MailHead {
        MailHead {
            folder: m.folder,
            uid: m.uid,
            date_ms: m.date_ms,
            flags: m.flags,
            size_bytes: m.size_bytes,
            blob_bytes: m.blob_bytes,
            blob: m.blob,
            index_bytes: m.index_bytes(),
        }
    }

    pub fn seen(&self) -> bool {
        MailFlags::from_bits_truncate(self.flags).contains(MailFlags::SEEN)
    }
}

impl Slot {
    fn fresh(m: StoredMail) -> Slot {
        Slot {
            raw: None,
            mail: OnceCell::from(Box::new(m)),
        }
    }

    fn raw<'b>(&self, buf: &'b [u8]) -> Option<&'b [u8]> {
        self.raw
            .map(|(start, len)| &buf[start as usize..start as usize + len as usize])
    }

    fn mail(&self, buf: &[u8]) -> &StoredMail {
        self.mail.get_or_init(|| {
            let raw = self.raw(buf).expect("a slot holds its mail or its bytes");
            let m = rmp_serde::from_slice(raw).expect("mail entries are checked at restore");
            Box::new(m)
        })
    }

    /// The mail, to change: its restored bytes no longer describe it.
    fn mail_mut(&mut self, buf: &[u8]) -> &mut StoredMail {
        self.mail(buf);
        self.raw = None;
        self.mail.get_mut().expect("decoded above")
    }

    fn into_mail(mut self, buf: &[u8]) -> StoredMail {
        self.mail(buf);
        *self.mail.take().expect("decoded above")
    }
}

impl Mails {
    /// Mails restored from `buf`: each id with its entry's (start,
    /// length) there, in strictly ascending id order. The entries are not
    /// checked here; [`Mails::heads`] does that.
    pub fn restored(buf: Vec<u8>, entries: Vec<(String, (u32, u32))>) -> Mails {
        for (_, (start, len)) in &entries {
            assert!(
                *start as usize + *len as usize <= buf.len(),
                "entry out of the buffer"
            );
        }
        Mails {
            // Sorted input, so `from_iter` builds the tree in one pass.
            slots: entries
                .into_iter()
                .map(|(id, raw)| {
                    let slot = Slot {
                        raw: Some(raw),
                        mail: OnceCell::new(),
                    };
                    (id, slot)
                })
                .collect(),
            buf: Rc::new(buf),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.slots.keys()
    }

    pub fn get(&self, id: &str) -> Option<&StoredMail> {
        self.slots.get(id).map(|s| s.mail(&self.buf))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut StoredMail> {
        let buf = &self.buf;
        self.slots.get_mut(id).map(|s| s.mail_mut(buf))
    }

    pub fn insert(&mut self, id: String, m: StoredMail) -> Option<StoredMail> {
        let old = self.slots.insert(id, Slot::fresh(m));
        old.map(|s| s.into_mail(&self.buf))
    }

    pub fn remove(&mut self, id: &str) -> Option<StoredMail> {
        let old = self.slots.remove(id);
        old.map(|s| s.into_mail(&self.buf))
    }

    /// Every mail in id order, decoding those not yet decoded.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &StoredMail)> {
        self.slots.iter().map(|(id, s)| (id, s.mail(&self.buf)))
    }

    /// Every mail, to change; all of them then lose their restored bytes.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut StoredMail> {
        let buf = &self.buf;
        self.slots.values_mut().map(|s| s.mail_mut(buf))
    }

    /// Every mail's [`MailHead`], checking each entry still in its
    /// restored bytes without decoding it; `Err` names the first bad one.
    pub fn heads(&self) -> impl Iterator<Item = (&String, Result<MailHead, String>)> {
        self.slots.iter().map(|(id, s)| {
            let head = match (s.mail.get(), s.raw(&self.buf)) {
                (Some(m), _) => Ok(MailHead::of(m)),
                (None, Some(raw)) => walk::head(raw).map_or_else(|| view_head(raw), Ok),
                (None, None) => unreachable!("a slot holds its mail or its bytes"),
            };
            (
                id,
                head.map_err(|e| format!("mail {id:?} does not decode: {e}")),
            )
        })
    }
}

impl From<BTreeMap<String, StoredMail>> for Mails {
    fn from(mails: BTreeMap<String, StoredMail>) -> Mails {
        Mails {
            slots: mails
                .into_iter()
                .map(|(id, m)| (id, Slot::fresh(m)))
                .collect(),
            buf: Rc::default(),
        }
    }
}

impl<'a> IntoIterator for &'a Mails {
    type Item = (&'a String, &'a StoredMail);
    type IntoIter = Box<dyn Iterator<Item = Self::Item> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// For tests only: outside them an id comes from input, and a missing one
/// must be an error, not a panic (`Mails::get`).
#[cfg(test)]
impl std::ops::Index<&str> for Mails {
    type Output = StoredMail;

    fn index(&self, id: &str) -> &StoredMail {
        self.get(id).expect("no mail with this id")
    }
}

impl PartialEq for Mails {
    fn eq(&self, other: &Mails) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Mails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Schema 5: a map from id to each mail's positional MessagePack as `bin`.
/// Mails still as restored are copied, not re-encoded.
impl Serialize for Mails {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.slots.len()))?;
        let mut scratch = Vec::new();
        for (id, slot) in &self.slots {
            let raw = match slot.raw(&self.buf) {
                Some(raw) => raw,
                None => {
                    scratch.clear();
                    let m = slot.mail.get().expect("a slot holds its mail or its bytes");
                    rmp_serde::encode::write(&mut scratch, m).expect("a mail always encodes");
                    &scratch[..]
                }
            };
            map.serialize_entry(id, serde_bytes::Bytes::new(raw))?;
        }
        map.end()
    }
}

/// The schema-5 mail map as it sits in a snapshot, borrowed from it.
pub struct RawMails<'a>(pub Vec<(&'a str, &'a [u8])>);

/// Entries to reserve up front at most: the count comes from the input.
const RAW_MAILS_RESERVE_MAX: usize = 1 << 16;

impl<'de: 'a, 'a> Deserialize<'de> for RawMails<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = RawMails<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of mail ids to encoded mails")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let reserve = map.size_hint().unwrap_or(0).min(RAW_MAILS_RESERVE_MAX);
                let mut out: Vec<(&'a str, &'a [u8])> = Vec::with_capacity(reserve);
                while let Some((id, raw)) = map.next_entry::<&'de str, &'de serde_bytes::Bytes>()? {
                    // Strictly ascending ids: one encoding per state, and
                    // no id twice.
                    if out.last().is_some_and(|(prev, _)| *prev >= id) {
                        return Err(de::Error::custom(format!("mail id {id:?} out of order")));
                    }
                    out.push((id, raw));
                }
                Ok(RawMails(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// Reads one encoded mail through the view types: checks it decodes as a
/// `StoredMail` would and returns its head.
fn view_head(raw: &[u8]) -> Result<MailHead, String> {
    let v: MailView<'_> = rmp_serde::from_slice(raw).map_err(|e| e.to_string())?;
    let index_bytes = v.from.len() as u64
        + v.to.0
        + v.cc.0
        + v.subject.len() as u64
        + v.message_id.len() as u64
        + v.in_reply_to.map_or(0, |s| s.len() as u64)
        + v.references.0
        + v.blob.len() as u64
        + v.attachments.0;
    Ok(MailHead {
        folder: v.folder,
        uid: v.uid,
        date_ms: v.date_ms,
        flags: v.flags,
        size_bytes: v.size_bytes,
        blob_bytes: v.blob_bytes,
        blob: v.blob,
        index_bytes,
    })
}

/// `StoredMail` field for field (same names, order and accepted input),
/// with strings borrowed and collections only walked. Keep in step with
/// `StoredMail`; `views_accept_what_stored_mail_accepts` checks it.
#[derive(Deserialize)]
#[allow(dead_code)] // Fields are decoded to be checked, not all read.
struct MailView<'a> {
    folder: u32,
    uid: u32,
    #[serde(borrow)]
    from: &'a str,
    to: StrLens,
    cc: StrLens,
    #[serde(borrow)]
    subject: &'a str,
    date_ms: i64,
    received_ms: i64,
    #[serde(borrow)]
    message_id: &'a str,
    #[serde(borrow)]
    in_reply_to: Option<&'a str>,
    references: StrLens,
    #[serde(with = "serde_bytes")]
    blob: Hash,
    blob_bytes: u64,
    size_bytes: u64,
    attachments: AttachLens,
    flags: u8,
    keywords: StrLens,
    spam_score: Option<f32>,
    delivered: Stamp,
    last_move: Option<Stamp>,
    flag_stamps: MapWalk<u8>,
    keyword_stamps: MapWalk<&'a str>,
    #[serde(borrow)]
    place: &'a str,
}

/// `Attachment` as [`MailView`] reads it.
#[derive(Deserialize)]
#[allow(dead_code)]
struct AttachmentView<'a> {
    #[serde(with = "serde_bytes")]
    hash: Hash,
    #[serde(borrow)]
    name: &'a str,
    #[serde(borrow)]
    media_type: &'a str,
    size_bytes: u64,
    splice_at: Option<u64>,
}

/// A sequence of strings (a `Vec` or `BTreeSet` of `String`): their
/// bytes summed.
struct StrLens(u64);

impl<'de> Deserialize<'de> for StrLens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrLens;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrLens, A::Error> {
                let mut n = 0u64;
                while let Some(s) = seq.next_element::<&'de str>()? {
                    n += s.len() as u64;
                }
                Ok(StrLens(n))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A sequence of attachments: the index bytes of each summed.
struct AttachLens(u64);

impl<'de> Deserialize<'de> for AttachLens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AttachLens;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of attachments")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttachLens, A::Error> {
                let mut n = 0u64;
                while let Some(a) = seq.next_element::<AttachmentView<'de>>()? {
                    n += (a.hash.len() + a.name.len() + a.media_type.len()) as u64;
                }
                Ok(AttachLens(n))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A `BTreeMap<K, Stamp>`, walked.
struct MapWalk<K>(PhantomData<K>);

impl<'de, K: Deserialize<'de>> Deserialize<'de> for MapWalk<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<K>);
        impl<'de, K: Deserialize<'de>> Visitor<'de> for V<K> {
            type Value = MapWalk<K>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of stamps")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<MapWalk<K>, M::Error> {
                while map.next_entry::<K, Stamp>()?.is_some() {}
                Ok(MapWalk(PhantomData))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

#[cfg(test)]
mod tests;
mod walk;
