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

use dem_message::corpus::Rng;
use dem_message::{Address, Compose, OutgoingAttachment};
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

/// Realistic message `i` of the stream `seed`, from `from` if given (a
/// host takes mail only from its sealing sender's own address).
pub fn realistic_from(seed: u64, i: u64, from: Option<&str>) -> anyhow::Result<StoredMail> {
    let mut r = Rng::new(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let body = if r.below(2) == 0 {
        r.log_uniform(256, 4096)
    } else {
        r.log_uniform(4096, 1 << 20)
    };
    let attachments = if r.below(10) == 0 {
        let size = r.log_uniform(100 << 10, 10 << 20);
        vec![OutgoingAttachment {
            name: format!("report-{i}.pdf"),
            media_type: "application/pdf".into(),
            content: r.bytes(size),
        }]
    } else {
        Vec::new()
    };
    let raw = dem_message::compose(&Compose {
        from: match from {
            Some(email) => Address {
                name: None,
                email: email.to_string(),
            },
            None => Address {
                name: Some(format!("Sender {}", r.below(1000))),
                email: format!("s{}@example.org", r.below(1000)),
            },
        },
        to: vec![Address {
            name: None,
            email: "owner@example.org".into(),
        }],
        cc: Vec::new(),
        subject: format!("Re: the numbers for week {} ({i})", r.below(53)),
        date_ms: 1_700_000_000_000 + i as i64 * 60_000,
        message_id: format!("{:x}.{i}@example.org", r.next_u64()),
        in_reply_to: None,
        references: Vec::new(),
        text: r.prose(body, "\r\n"),
        html: None,
        attachments,
    })?;
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
