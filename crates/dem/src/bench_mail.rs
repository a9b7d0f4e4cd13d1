//! Realistic mail for the benchmarks: RFC 5322 messages with bodies of a
//! median of about 4 KiB and a tail to 1 MiB, and an attachment of
//! 100 KiB–10 MiB on one mail in ten, split as a sender's client splits
//! them (large parts cut out as floating attachments), so a host stores
//! what it would store for real mail.
//!
//! Generating a 10 MiB attachment and 1 MiB of text costs far more than
//! delivering the result, so a benchmark draws from a pool made before the
//! clock starts, and makes each delivery's bytes unique with one header
//! line in front (a host stores equal bytes once, which would flatter it).

use dem_message::corpus::realistic_message;
use dem_node::mailbox::Incoming;
use dem_proto::mail::AttachmentRef;

/// One message as a host receives it: the stored bytes and the references
/// of the parts cut out of them.
#[derive(Clone)]
pub struct StoredMail {
    pub stored: Vec<u8>,
    pub cuts: Vec<AttachmentRef>,
}

/// Realistic message `i` of the stream `seed`.
pub fn realistic(seed: u64, i: u64) -> anyhow::Result<StoredMail> {
    realistic_from(seed, i, None)
}

/// Realistic message `i` of the stream `seed` (`corpus::realistic_message`),
/// from `from` if given, split as a sender's client splits it.
pub fn realistic_from(seed: u64, i: u64, from: Option<&str>) -> anyhow::Result<StoredMail> {
    let raw = realistic_message(seed, i, from)
        .ok_or_else(|| anyhow::anyhow!("realistic message {i} of stream {seed} did not compose"))?;
    let split = dem_message::split(&raw)?;
    let cuts = split
        .cuts
        .iter()
        .map(|c| AttachmentRef {
            hash: c.hash.iter().map(|b| format!("{b:02x}")).collect(),
            name: c.name.clone(),
            media_type: c.media_type.clone(),
            size_bytes: c.content.len() as u64,
            splice_at: Some(c.offset),
        })
        .collect();
    Ok(StoredMail {
        stored: split.stored,
        cuts,
    })
}

/// `n` realistic messages, made before a benchmark's clock starts.
pub fn pool(seed: u64, n: u64) -> anyhow::Result<Vec<StoredMail>> {
    (0..n).map(|i| realistic(seed, i)).collect()
}

/// The pool's message `i mod len` with a header line naming `tag` in
/// front, so every delivery's bytes differ; its cut parts' references
/// moved by that line.
pub fn unique(pool: &[StoredMail], i: u64, tag: &str) -> StoredMail {
    let m = &pool[(i % pool.len() as u64) as usize];
    let line = format!("X-Bench-Delivery: {tag}\r\n");
    let mut stored = Vec::with_capacity(line.len() + m.stored.len());
    stored.extend_from_slice(line.as_bytes());
    stored.extend_from_slice(&m.stored);
    let shift = line.len() as u64;
    let cuts = m
        .cuts
        .iter()
        .map(|c| AttachmentRef {
            splice_at: c.splice_at.map(|at| at + shift),
            ..c.clone()
        })
        .collect();
    StoredMail { stored, cuts }
}

/// Delivery `i` as a host takes it: [`unique`] for `i`, parsed.
pub fn incoming(pool: &[StoredMail], i: u64) -> anyhow::Result<Incoming> {
    let m = unique(pool, i, &i.to_string());
    Ok(Incoming::parse(format!("bench-{i:08}"), m.stored, m.cuts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_mail_is_realistic_and_unique_per_delivery() -> anyhow::Result<()> {
        let pool = pool(7, 40)?;
        assert!(pool.iter().any(|m| !m.cuts.is_empty()), "some parts cut");
        assert!(
            pool.iter()
                .all(|m| m.stored.len() <= dem_message::limits::STORED_BYTES_MAX)
        );
        let a = incoming(&pool, 3)?;
        let b = incoming(&pool, 43)?;
        assert_ne!(a.mail.message.hash, b.mail.message.hash);
        assert_eq!(a.mail.subject, b.mail.subject);
        Ok(())
    }
}
