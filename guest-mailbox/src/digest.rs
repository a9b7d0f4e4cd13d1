//! `state-digest`: a BLAKE3 hash of the replicated content of the mailbox,
//! so replicas (and tests) can check cheaply that they converged.
//!
//! It covers exactly what replicas applying the same set of operations
//! must agree on, in any order: every mail by id with its index entry
//! (envelope fields, references, the message blob's hash and sizes, each
//! attachment with its splice position), folder (by name), flags,
//! keywords and merge stamps; delete tombstones; folder names; contacts, allow and block lists, preferences and plugins with
//! their stamps and tombstones. It leaves out what legitimately depends on
//! the local order of application: IMAP UIDs, uid-next and uid-validity
//! (a replica hands them out in the order moves and deliveries reach it,
//! and IMAP only requires them to grow), the derived indices, and the
//! record of deleted folder names, which is bookkeeping for settling
//! folder races (`placement.rs`) and not content. Converted messages
//! waiting for `take-converted` are not state either; the blob hashes the
//! mails name stand for them.
//!
//! The encoding is canonical and streamed into the hasher: a domain tag,
//! then sections in a fixed order, every map in key order (`BTreeMap`),
//! every variable-length item prefixed by its length, integers as
//! little-endian fixed-width, so no two different states encode alike.

use crate::lww::LwwMap;
use crate::state::{Mailbox, Stamp, StoredMail};

/// Bumped whenever the encoding below changes, so digests of different
/// builds never compare equal by accident.
/// v2: mails carry a message blob and references instead of headers and
/// a body (schema 4).
const DOMAIN: &[u8] = b"dem:mail state-digest v2";

/// Canonical encoder writing straight into a BLAKE3 hasher.
struct Enc(blake3::Hasher);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.update(&[v]);
    }

    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.0.update(&v.to_le_bytes());
    }

    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.update(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn strs<'a>(&mut self, v: impl ExactSizeIterator<Item = &'a String>) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }

    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }

    fn stamp(&mut self, s: Stamp) {
        self.u64(s.hlc);
        self.u64(s.replica);
    }

    /// A section marker, so a count in one section cannot be mistaken for
    /// data of the one before.
    fn section(&mut self, name: &str, count: usize) {
        self.str(name);
        self.len(count);
    }

    /// Every register of an LWW map, tombstones included.
    fn lww<V: Default>(
        &mut self,
        name: &str,
        map: &LwwMap<V>,
        mut value: impl FnMut(&mut Self, &V),
    ) {
        self.section(name, map.registers().len());
        for (key, r) in map.registers() {
            self.str(key);
            self.stamp(r.stamp);
            self.u8(u8::from(r.live));
            value(self, &r.value);
        }
    }

    fn mail(&mut self, id: &str, folder: &str, m: &StoredMail) {
        self.str(id);
        self.str(folder);
        self.str(&m.from);
        self.strs(m.to.iter());
        self.strs(m.cc.iter());
        self.str(&m.subject);
        self.i64(m.date_ms);
        self.i64(m.received_ms);
        self.str(&m.message_id);
        self.opt_str(m.in_reply_to.as_deref());
        self.strs(m.references.iter());
        self.bytes(&m.blob);
        self.u64(m.blob_bytes);
        self.u64(m.size_bytes);
        self.len(m.attachments.len());
        for a in &m.attachments {
            self.bytes(&a.hash);
            self.str(&a.name);
            self.str(&a.media_type);
            self.u64(a.size_bytes);
            match a.splice_at {
                None => self.u8(0),
                Some(at) => {
                    self.u8(1);
                    self.u64(at);
                }
            }
        }
        self.u8(m.flags);
        self.strs(m.keywords.iter());
        match m.spam_score {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.0.update(&s.to_bits().to_le_bytes());
            }
        }
        self.stamp(m.delivered);
        self.stamp(m.moved());
        self.len(m.flag_stamps.len());
        for (bit, s) in &m.flag_stamps {
            self.u8(*bit);
            self.stamp(*s);
        }
        self.len(m.keyword_stamps.len());
        for (k, s) in &m.keyword_stamps {
            self.str(k);
            self.stamp(*s);
        }
    }
}

impl Mailbox {
    /// BLAKE3 of the replicated content; see the module comment for what
    /// is in and what is out.
    pub fn state_digest(&self) -> [u8; 32] {
        let s = &self.state;
        let mut e = Enc(blake3::Hasher::new());
        e.bytes(DOMAIN);
        e.section("mails", s.mails.len());
        for (id, m) in &s.mails {
            e.mail(id, self.folder_name_of(m.folder), m);
        }
        e.section("tombstones", s.tombstones.len());
        for (id, t) in &s.tombstones {
            e.str(id);
            e.i64(t.deleted_ms);
            e.stamp(t.stamp());
        }
        e.section("folders", s.folders.len());
        for name in s.folders.keys() {
            e.str(name);
        }
        e.lww("contacts", &s.contacts, |e, c| {
            e.str(&c.name);
            e.str(&c.address);
            e.str(&c.note);
        });
        e.lww("allow", &s.allow, |_, ()| {});
        e.lww("block", &s.block, |_, ()| {});
        e.lww("preferences", &s.preferences, |e, v| e.str(v));
        e.lww("plugins", &s.plugins, |e, p| {
            e.str(&p.code_hash);
            e.str(&p.config);
            e.u64(u64::from(p.order));
        });
        *e.0.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn digest_ignores_uids_but_not_content() {
        // Same mails and moves, applied in different orders: different
        // UIDs, same digest.
        let mut a = Mailbox::default();
        put(&mut a, 1, "x", 1, "INBOX");
        put(&mut a, 2, "y", 2, "INBOX");
        let mut b = Mailbox::default();
        put(&mut b, 2, "y", 2, "INBOX");
        put(&mut b, 1, "x", 1, "INBOX");
        assert_ne!(
            a.state.mails.get("x").map(|m| m.uid),
            b.state.mails.get("x").map(|m| m.uid)
        );
        assert_eq!(a.state_digest(), b.state_digest());

        let before = a.state_digest();
        a.set_flags(
            &ctx(3),
            "x",
            &flags(crate::wit::MailFlags::SEEN, &[]),
            &none(),
        )
        .unwrap();
        assert_ne!(a.state_digest(), before);
        let before = a.state_digest();
        a.create_folder(&ctx(4), "Archive").unwrap();
        assert_ne!(a.state_digest(), before);
        let before = a.state_digest();
        a.set_preference(&ctx(5), "k".into(), "v".into()).unwrap();
        assert_ne!(a.state_digest(), before);
    }

    #[test]
    fn digest_survives_snapshot_and_restore() {
        let mut a = Mailbox::default();
        put(&mut a, 1, "x", 1, "Lists/rust");
        a.delete_mail(&ctx(2), "gone").unwrap();
        let bytes = crate::snapshot::encode(&a.state, 0);
        let state = crate::snapshot::decode_state(crate::snapshot::SCHEMA_VERSION, &bytes).unwrap();
        let b = Mailbox::from_state(state).unwrap();
        assert_eq!(a.state_digest(), b.state_digest());
    }
}
