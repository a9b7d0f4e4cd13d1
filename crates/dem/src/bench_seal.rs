//! `dem bench seal`: what end-to-end sealing (issue 17, `dem-seal`) costs
//! a sender and a reader, all measured in one run so ratios hold on a
//! noisy machine.
//!
//! A 4 KiB mail to one recipient is sealed the way a client will: a fresh
//! content key, the message under it, the key wrapped to the recipient
//! and to the sender's Sent copy, and the sender's ed25519 seal over a
//! digest of it. Opening is the reader's half. Then a large attachment is
//! streamed file to file in a child process of its own, so its peak
//! memory (`VmHWM`) is the streaming's alone, beside a plain copy through
//! the same buffer as the baseline.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;

use dem_identity::{KeyPair, verify_signature};
use dem_seal::{
    AttachmentOpener, AttachmentSealer, ContentKey, EncryptionKeyPair, WrappedKey, open_content,
    seal_content, unwrap_key, wrap_key,
};

/// Sizes of one run.
pub(super) struct SealParams {
    /// How long each throughput measurement runs.
    pub seconds: u64,
    /// The streamed attachment's size.
    pub attachment_mib: u64,
}

/// The size of the benchmark's mail.
const MESSAGE_BYTES: usize = 4 << 10;

/// The reads and writes of the attachment test: what a client streaming a
/// file would use.
const IO_BUFFER_BYTES: usize = 1 << 20;

/// One sender, one recipient and a message, fixed so every thread and
/// every run does the same work.
struct Fixture {
    sender: KeyPair,
    sender_enc: EncryptionKeyPair,
    recipient_enc: EncryptionKeyPair,
    message: Vec<u8>,
}

/// What a sender produces: the sealed content, the two wrapped keys and
/// the seal on the envelope.
struct Sealed {
    content: Vec<u8>,
    to_recipient: WrappedKey,
    digest: [u8; 32],
    signature: [u8; 64],
}

const MAIL_ID: &[u8] = b"mail 0123456789abcdef";

impl Fixture {
    fn new() -> Self {
        Self {
            sender: KeyPair::from_seed(&[1; 32]),
            sender_enc: EncryptionKeyPair::derive(b"bench sender"),
            recipient_enc: EncryptionKeyPair::derive(b"bench recipient"),
            message: (0..MESSAGE_BYTES).map(|i| (i * 7 % 251) as u8).collect(),
        }
    }

    fn seal(&self) -> anyhow::Result<Sealed> {
        let key = ContentKey::generate()?;
        let content = seal_content(&key, MAIL_ID, &self.message)?;
        let to_recipient = wrap_key(&key, &self.recipient_enc.public(), MAIL_ID)?;
        // The Sent copy's key: part of the cost, not opened here.
        std::hint::black_box(wrap_key(&key, &self.sender_enc.public(), MAIL_ID)?);
        let digest = *blake3::hash(&content).as_bytes();
        let signature = self.sender.sign(&digest);
        Ok(Sealed {
            content,
            to_recipient,
            digest,
            signature,
        })
    }

    fn open(&self, sealed: &Sealed) -> anyhow::Result<()> {
        let key = unwrap_key(&sealed.to_recipient, &self.recipient_enc, MAIL_ID)?;
        let digest = *blake3::hash(&sealed.content).as_bytes();
        verify_signature(&self.sender.public_bytes(), &digest, &sealed.signature)?;
        let message = open_content(&key, MAIL_ID, &sealed.content)?;
        if message.len() != MESSAGE_BYTES || digest != sealed.digest {
            bail!("the opened mail differs from the sealed one");
        }
        Ok(())
    }
}

pub(super) async fn run(params: SealParams) -> anyhow::Result<serde_json::Value> {
    let seconds = params.seconds.max(1);
    let mut result = tokio::task::spawn_blocking(move || mail(seconds)).await??;
    let attachment = attachment_in_child(params.attachment_mib.max(1)).await?;
    if let (Some(obj), serde_json::Value::Object(more)) = (result.as_object_mut(), attachment) {
        obj.extend(more);
    }
    Ok(result)
}

/// The 4 KiB mail: throughput on every core and on one, then each step.
fn mail(seconds: u64) -> anyhow::Result<serde_json::Value> {
    let fixture = Arc::new(Fixture::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let span = Duration::from_secs(seconds);
    let sealed = Arc::new(fixture.seal()?);
    fixture.open(&sealed)?;

    let f = fixture.clone();
    let seal_per_s = per_second(threads, span, move || f.seal().map(drop))?;
    let f = fixture.clone();
    let seal_per_s_1thread = per_second(1, span, move || f.seal().map(drop))?;
    let (f, s) = (fixture.clone(), sealed.clone());
    let open_per_s = per_second(threads, span, move || f.open(&s))?;
    let (f, s) = (fixture.clone(), sealed.clone());
    let open_per_s_1thread = per_second(1, span, move || f.open(&s))?;

    // What `dem send` and the owner's `dem read` run per recipient:
    // `seal_mail` (content, one wrap, the signed envelope) and `open_mail`
    // (the envelope's signature and hash, the unwrap, the content).
    let real = Arc::new(RealPath::new()?);
    let r = real.clone();
    let seal_mail_per_s = per_second(threads, span, move || r.seal().map(drop))?;
    let sealed_mail = Arc::new(real.seal()?);
    let (r, m) = (real.clone(), sealed_mail.clone());
    let open_mail_per_s = per_second(threads, span, move || r.open(&m))?;

    // Each step alone, on one thread, a fifth of the span each.
    let step = (span / 5).max(Duration::from_millis(200));
    let key = ContentKey::generate()?;
    let to = fixture.recipient_enc.public();
    let hpke_wrap_us = micros(step, || wrap_key(&key, &to, MAIL_ID).map(drop))?;
    let w = wrap_key(&key, &to, MAIL_ID)?;
    let hpke_unwrap_us = micros(step, || {
        unwrap_key(&w, &fixture.recipient_enc, MAIL_ID).map(drop)
    })?;
    let aead_4k_us = micros(step, || {
        seal_content(&key, MAIL_ID, &fixture.message).map(drop)
    })?;
    let digest = sealed.digest;
    let sign_us = micros(step, || {
        std::hint::black_box(fixture.sender.sign(&digest));
        Ok::<_, anyhow::Error>(())
    })?;
    let public = fixture.sender.public_bytes();
    let verify_us = micros(step, || {
        verify_signature(&public, &digest, &sealed.signature)
    })?;

    Ok(json!({
        "threads": threads,
        "message_bytes": MESSAGE_BYTES,
        "seal_mail_per_s": seal_mail_per_s.round(),
        "open_mail_per_s": open_mail_per_s.round(),
        "seal_per_s": seal_per_s.round(),
        "seal_per_s_1thread": seal_per_s_1thread.round(),
        "open_per_s": open_per_s.round(),
        "open_per_s_1thread": open_per_s_1thread.round(),
        "hpke_wrap_us": round2(hpke_wrap_us),
        "hpke_unwrap_us": round2(hpke_unwrap_us),
        "aead_4k_us": round2(aead_4k_us),
        "sign_us": round2(sign_us),
        "verify_us": round2(verify_us),
    }))
}

/// `dem_seal::seal_mail` and `open_mail` on a 4 KiB message to one
/// recipient: the library path the client runs.
struct RealPath {
    sender: KeyPair,
    name: dem_identity::Name,
    recipient: KeyPair,
    keyring: dem_seal::Keyring,
    contents: dem_seal::MailContents,
}

impl RealPath {
    fn new() -> anyhow::Result<Self> {
        let message = Fixture::new().message;
        Ok(Self {
            sender: KeyPair::from_seed(&[1; 32]),
            name: dem_identity::Name::new("bench")?,
            recipient: KeyPair::from_seed(&[2; 32]),
            keyring: dem_seal::Keyring::generate(0)?,
            contents: dem_seal::MailContents {
                message,
                attachments: vec![],
            },
        })
    }

    fn seal(&self) -> anyhow::Result<dem_identity::SealedMail> {
        let to = dem_seal::Recipient {
            user: self.recipient.user_id(),
            key: self.keyring.current().public(),
        };
        let mut mails = dem_seal::seal_mail(&self.sender, &self.name, &self.contents, &[to], 1)?;
        mails.pop().context("one sealed mail")
    }

    fn open(&self, mail: &dem_identity::SealedMail) -> anyhow::Result<()> {
        dem_seal::open_mail(mail, self.recipient.user_id(), &self.keyring)?;
        Ok(())
    }
}

/// Runs `op` on `threads` threads for `span`; operations per second.
fn per_second<F>(threads: usize, span: Duration, op: F) -> anyhow::Result<f64>
where
    F: Fn() -> anyhow::Result<()> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    op()?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a bench thread panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64())
}

/// Mean microseconds of `op` over `span`, on this thread.
fn micros<E>(span: Duration, mut op: impl FnMut() -> Result<(), E>) -> anyhow::Result<f64>
where
    E: Into<anyhow::Error>,
{
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < span {
        for _ in 0..16 {
            op().map_err(Into::into)?;
        }
        n += 16;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Runs the attachment test in a fresh `dem` process (the hidden `bench
/// seal-attachment`), so `VmHWM` counts nothing but the streaming.
async fn attachment_in_child(mib: u64) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("finding the dem binary")?;
    let out = tokio::process::Command::new(exe)
        .args(["bench", "seal-attachment", "--mib", &mib.to_string()])
        .env(super::EXIT_WITH_PARENT_ENV, "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running dem bench seal-attachment")?;
    if !out.status.success() {
        bail!(
            "dem bench seal-attachment failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the child's result {line:?}"))
}

/// The child's side: writes a `mib` MiB file of pseudo-random bytes,
/// copies it, seals it and opens it, file to file through 1 MiB buffers,
/// checks the result and prints one JSON line. The files go in a temp dir
/// removed on return.
pub(super) fn attachment(mib: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating a temp dir")?;
    let plain = dir.path().join("plain");
    let copy = dir.path().join("copy");
    let sealed = dir.path().join("sealed");
    let opened = dir.path().join("opened");
    let original_hash = write_random(&plain, mib)?;
    let bytes = mib << 20;

    let t = Instant::now();
    stream(&plain, &copy, |input, out| {
        out.extend_from_slice(input);
        Ok(())
    })?;
    let copy_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&copy)?;

    let key = ContentKey::generate()?;
    let t = Instant::now();
    let mut sealer = AttachmentSealer::new(&key)?;
    stream(&plain, &sealed, |input, out| Ok(sealer.update(input, out)?))?;
    let mut tail = Vec::new();
    let info = sealer.finish(&mut tail)?;
    append(&sealed, &tail)?;
    let seal_s = t.elapsed().as_secs_f64();
    if info.ciphertext_bytes != dem_seal::ciphertext_size(bytes) {
        bail!("the sealed size differs from ciphertext_size");
    }

    let t = Instant::now();
    let mut opener = AttachmentOpener::new(&key);
    stream(
        &sealed,
        &opened,
        |input, out| Ok(opener.update(input, out)?),
    )?;
    let mut tail = Vec::new();
    let plaintext_bytes = opener.finish(&mut tail)?;
    append(&opened, &tail)?;
    let open_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&sealed)?;

    if plaintext_bytes != bytes || hash_file(&opened)? != original_hash {
        bail!("the opened attachment differs from the original");
    }
    let mib_f = mib as f64;
    let result = json!({
        "attachment_mib": mib,
        "attachment_peak_rss_mib": peak_rss_mib()?,
        "attachment_copy_mib_per_s": (mib_f / copy_s).round(),
        "attachment_seal_mib_per_s": (mib_f / seal_s).round(),
        "attachment_open_mib_per_s": (mib_f / open_s).round(),
    });
    println!("{result}");
    Ok(())
}

/// Writes `mib` MiB of splitmix64 output; returns its BLAKE3.
fn write_random(path: &Path, mib: u64) -> anyhow::Result<blake3::Hash> {
    let mut file = std::fs::File::create(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; IO_BUFFER_BYTES];
    let mut state = 0x5eed_u64;
    for _ in 0..mib {
        for word in buf.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        hasher.update(&buf);
        file.write_all(&buf)?;
    }
    Ok(hasher.finalize())
}

/// Reads `from` in 1 MiB pieces, passes each through `step` and writes
/// what it returns to `to`.
fn stream(
    from: &Path,
    to: &Path,
    mut step: impl FnMut(&[u8], &mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut input = std::fs::File::open(from)?;
    let mut output = std::fs::File::create(to)?;
    let mut buf = vec![0u8; IO_BUFFER_BYTES];
    // Room for a piece and the tags of the chunks it completes.
    let mut out = Vec::with_capacity(IO_BUFFER_BYTES + (64 << 10));
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        step(&buf[..n], &mut out)?;
        output.write_all(&out)?;
        out.clear();
    }
}

fn append(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

fn hash_file(path: &Path) -> anyhow::Result<blake3::Hash> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; IO_BUFFER_BYTES];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// This process's peak resident memory, from `VmHWM`.
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(round2(kib / 1024.0))
}
