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
    stored_form(&raw)
}

/// A text mail from `from` with a body drawn log-uniform over
/// `avg_bytes`/3 to 2.2 × `avg_bytes` (a mean of about `avg_bytes`), for
/// `dem bench size`, whose mailbox must reach a total the realistic stream
/// would need ten times the mails for (its stored mean is about 6 KiB:
/// the large parts are cut out). Bodies under 64 KiB are not cut, so the
/// stored form is the whole message.
pub fn sized_from(seed: u64, i: u64, from: &str, avg_bytes: usize) -> anyhow::Result<StoredMail> {
    use dem_message::{Address, Compose, compose, corpus::Rng};
    let mut r = Rng::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    // Headroom under the stored limit for the headers and the delivery
    // tag `unique` puts in front.
    let top = dem_message::limits::STORED_BYTES_MAX - (64 << 10);
    let lo = (avg_bytes / 3).clamp(64, top);
    let body = r.log_uniform(lo, (avg_bytes * 22 / 10).clamp(lo, top));
    let raw = compose(&Compose {
        from: Address {
            name: None,
            email: from.to_string(),
        },
        to: vec![Address {
            name: None,
            email: format!("r{}@example.net", r.below(1000)),
        }],
        cc: Vec::new(),
        subject: format!("Re: the numbers for week {} ({i})", r.below(53)),
        date_ms: 1_700_000_000_000 + i as i64 * 60_000,
        message_id: format!("{:x}.{i}@example.org", r.next_u64()),
        in_reply_to: None,
        references: Vec::new(),
        text: r.prose(body, "\r\n"),
        html: None,
        attachments: Vec::new(),
    })?;
    stored_form(&raw)
}

/// `raw` split as a sender's client splits it.
fn stored_form(raw: &[u8]) -> anyhow::Result<StoredMail> {
    let split = dem_message::split(raw)?;
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
    fn sized_mail_averages_what_was_asked() -> anyhow::Result<()> {
        let avg = 22 << 10;
        let mails: Vec<StoredMail> = (0..200)
            .map(|i| sized_from(1, i, "a@dem", avg))
            .collect::<anyhow::Result<_>>()?;
        let mean = mails.iter().map(|m| m.stored.len()).sum::<usize>() / mails.len();
        assert!((avg * 8 / 10..avg * 12 / 10).contains(&mean), "mean {mean}");
        assert!(mails.iter().all(|m| m.cuts.is_empty()), "nothing cut");
        Ok(())
    }

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
