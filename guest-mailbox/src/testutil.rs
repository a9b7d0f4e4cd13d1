//! Helpers shared by the unit tests: fixed contexts and sample mails, so
//! tests stay short and deterministic, and a seeded generator for the
//! randomised ones.

use crate::state::Mailbox;
use crate::wit::{
    AttachmentRef, BlobRef, Delivered, FlagState, MailFlags, NewMail, OpContext, Placement,
};

/// Context of the `n`-th operation: time and hlc grow with `n`.
pub fn ctx(n: u64) -> OpContext {
    OpContext {
        now_ms: 1_700_000_000_000 + n as i64 * 1000,
        hlc: n,
        replica: 1,
    }
}

/// A blob ref to stand for a message: the hash of `seed`, `size` bytes.
pub fn blob(seed: &str, size: u64) -> BlobRef {
    BlobRef {
        hash: blake3::hash(seed.as_bytes()).to_hex().to_string(),
        size_bytes: size,
    }
}

/// A mail whose message blob is named after its id: different ids name
/// different blobs.
pub fn mail(id: &str, date_ms: i64) -> NewMail {
    NewMail {
        id: id.to_string(),
        from: "Alice <alice@example.com>".into(),
        to: vec!["bob@example.com".into()],
        cc: vec!["carol@example.org".into()],
        subject: format!("Hello {id}"),
        date_ms,
        message_id: format!("<{id}@example.com>"),
        in_reply_to: None,
        references: vec![],
        message: blob(id, 1000),
        size_bytes: 1000,
        attachments: vec![],
    }
}

pub fn attachment() -> AttachmentRef {
    AttachmentRef {
        hash: "ab".repeat(32),
        name: "a.pdf".into(),
        media_type: "application/pdf".into(),
        size_bytes: 1234,
        splice_at: None,
    }
}

pub fn place(folder: &str) -> Placement {
    Placement {
        folder: folder.into(),
        flags: MailFlags::empty(),
        keywords: vec![],
        spam_score: None,
    }
}

pub fn flags(f: MailFlags, kws: &[&str]) -> FlagState {
    FlagState {
        flags: f,
        keywords: kws.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn none() -> FlagState {
    flags(MailFlags::empty(), &[])
}

/// Delivers `mail(id, date)` into `folder` with context `n`.
pub fn put(mb: &mut Mailbox, n: u64, id: &str, date: i64, folder: &str) -> Delivered {
    mb.deliver(&ctx(n), mail(id, date), place(folder))
        .expect("test delivery")
}

pub fn ids(items: &[crate::wit::MailSummary]) -> Vec<&str> {
    items.iter().map(|s| s.id.as_str()).collect()
}

/// splitmix64: tiny, seedable, good enough to drive a test.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Seeds to run: `DEM_SEED` alone if set, else a fixed range, so CI is
/// deterministic and a failure names the seed to replay.
pub fn seeds(base: u64, count: u64) -> Vec<u64> {
    match std::env::var("DEM_SEED") {
        Ok(s) => {
            let s = s.trim();
            let seed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            vec![seed.expect("DEM_SEED is a number")]
        }
        Err(_) => (0..count).map(|i| base + i).collect(),
    }
}
